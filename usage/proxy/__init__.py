"""The logging proxy (docs/api.md, Logging proxy): OpenAI-compatible calls forwarded to an account's
TOKI base URL, one UsageRecord per recorded call, prompts and outputs never stored.

- `app`: the ASGI application that serves `/proxy/…` (mounted in toki_dashboard.asgi);
- `forwarding`: the shared httpx client and one forwarded exchange, streams included;
- `transport`: the HTTP/1.1 keep-alive transport under that client;
- `sse`: Server-Sent Events split into events, and the usage the proxy asked for taken out;
- `measure`: lengths and character-class profiles of request and response JSON;
- `recorder`: finished calls → RecordIn → `record_usage`, off the response path;
- `spool`: the durable JSONL files records wait in while the database is unavailable;
- `simulator`: a local OpenAI-compatible upstream for development, tests and benchmarks, and
  `simulator_answers`, what it answers (refusals, deterministic content);
- `urls`, `views`: the same paths in Django's URLconf, for servers that do not mount `app`.
"""
