"""The generated blocks of docs/api.md, a module each (`docs/build_api_md.py` is the command):

- `openapi`: `endpoints` and `schemas`;
- `commands`: `commands`;
- `environment`: `environment`;
- `markdown`: the tables they are written as.
"""
