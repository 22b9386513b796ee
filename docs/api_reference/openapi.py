"""The `endpoints` and `schemas` blocks: the OpenAPI document of `/api/v1` (`toki_dashboard.api.api`),
with the token scope and session roles each endpoint accepts read from its auth objects."""

from __future__ import annotations

from typing import Any

from api_reference.markdown import anchor, table

# Query parameters whose schema carries no description: what each means, whichever endpoint
# takes it. A new parameter without a description here (or in its schema) stops the build.
PARAMETERS = {
    "start": "First day of the period (inclusive), a day of `DASHBOARD_TIME_ZONE`",
    "end": "Last day of the period (inclusive); not before `start`",
    "group_by": "The dimension of the rows: model, API key name, team, or day",
    "account": "The account's slug; a token may only name its own, a user one they may see. "
    "Default: the token's account, or the user's current one",
    "model": "Only this model (exact name)",
    "api_key": "Only this API key (its name)",
    "team": "Only this team",
    "error_cause": "Only this error cause (`none`: successful calls)",
    "source": "Only records that arrived this way",
    "estimated": "`true`: only records with estimated tokens; `false`: only reported ones",
    "limit": "Records per page",
    "cursor": "The `next_cursor` of the previous page; absent for the first page",
}


_SCHEMA: dict[str, Any] = {}


def openapi() -> dict[str, Any]:
    if not _SCHEMA:
        from toki_dashboard.api import api

        _SCHEMA.update(api.get_openapi_schema())
    return _SCHEMA


def ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def type_of(schema: dict[str, Any]) -> str:
    """A field's type in words: `string (date-time)`, `list of [RecordIn](#recordin)`, `integer or null`…"""
    if "$ref" in schema:
        name = ref_name(schema["$ref"])
        return f"[{name}](#{anchor(name)})"
    if "allOf" in schema and len(schema["allOf"]) == 1:
        return type_of(schema["allOf"][0])
    for union in ("anyOf", "oneOf"):
        if union in schema:
            return " or ".join(dict.fromkeys(type_of(s) for s in schema[union]))
    if "enum" in schema:
        return "one of " + ", ".join(f"`{v}`" for v in schema["enum"])
    if "const" in schema:
        return '`""`' if schema["const"] == "" else f"`{schema['const']}`"
    kind = schema.get("type", "any")
    if kind == "array":
        text = f"list of {type_of(schema.get('items', {}))}"
    elif kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        text = f"object of {type_of(schema['additionalProperties'])}"
    else:
        text = str(kind)
        if "format" in schema:
            text += f" ({schema['format']})"
    limits = constraints(schema)
    return f"{text} ({limits})" if limits else text


def constraints(schema: dict[str, Any]) -> str:
    words = {
        "minimum": "≥ {}",
        "exclusiveMinimum": "> {}",
        "maximum": "≤ {}",
        "exclusiveMaximum": "< {}",
        "minLength": "≥ {} characters",
        "maxLength": "≤ {} characters",
        "minItems": "≥ {} items",
        "maxItems": "≤ {} items",
        "pattern": "matches `{}`",
    }
    return ", ".join(text.format(schema[key]) for key, text in words.items() if key in schema)


def default_of(schema: dict[str, Any], required: bool) -> str:
    if required:
        return "required"
    if "default" in schema:
        value = schema["default"]
        if value == "":
            return '`""`'
        return "null" if value is None else f"`{value}`".replace("`True`", "`true`").replace("`False`", "`false`")
    return "optional"


def fields_table(schema: dict[str, Any]) -> str:
    required = set(schema.get("required", []))
    rows = [
        (f"`{name}`", type_of(field), default_of(field, name in required), field.get("description", ""))
        for name, field in schema.get("properties", {}).items()
    ]
    return table(("field", "type", "required / default", "meaning"), rows)


def auth_of(method: str, path: str) -> str:
    """Who may call an endpoint, read from its auth objects (usage.auth)."""
    from toki_dashboard.api import api
    from usage.auth import SessionRoleAuth, TokenAuth

    prefix = "/api/v1"
    for _, router in api._routers:
        for route, view in router.path_operations.items():
            for operation in view.operations:
                if method.upper() in operation.methods and prefix + route == path:
                    parts = []
                    for auth in operation.auth_callbacks:
                        if isinstance(auth, TokenAuth):
                            parts.append(f"a token with the `{auth.scope}` scope")
                        elif isinstance(auth, SessionRoleAuth):
                            roles = " or ".join(f"`{r}`" for r in auth.roles)
                            parts.append(f"the session of a logged-in user with the role {roles} (or `admin`)")
                        else:
                            parts.append(type(auth).__name__)
                    return ", or ".join(parts)
    raise SystemExit(f"no operation for {method.upper()} {path}")


def parameter_meaning(parameter: dict[str, Any]) -> str:
    meaning = parameter.get("description") or parameter.get("schema", {}).get("description")
    meaning = meaning or PARAMETERS.get(parameter["name"])
    if not meaning:
        raise SystemExit(
            f"docs/api_reference/openapi.py PARAMETERS: say what the query parameter {parameter['name']!r} means"
        )
    return meaning


def endpoints_block(schema: dict[str, Any]) -> str:
    out = []
    for path, operations in schema["paths"].items():
        for method, op in operations.items():
            title = f"{method.upper()} {path}"
            out.append(f"### {title}\n")
            out.append(f"**{op.get('summary', '')}.** {' '.join(op.get('description', '').split())}\n")
            out.append(f"*Who:* {auth_of(method, path)}.\n")
            params = op.get("parameters", [])
            if params:
                rows = [
                    (
                        f"`{p['name']}`",
                        type_of(p.get("schema", {})),
                        default_of(p.get("schema", {}), p.get("required", False)),
                        parameter_meaning(p),
                    )
                    for p in params
                ]
                out.append("*Query parameters:*\n")
                out.append(table(("parameter", "type", "required / default", "meaning"), rows) + "\n")
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            if body:
                out.append(f"*Body:* JSON, {type_of(body)}.\n")
            answers, problems = [], []
            for status, answer in op.get("responses", {}).items():
                content = answer.get("content", {}).get("application/json", {}).get("schema", {})
                if content.get("$ref", "").endswith("/Problem"):
                    problems.append(f"`{status}`")
                else:
                    answers.append(f"`{status}` {type_of(content)}")
            out.append(f"*Answers:* {'; '.join(answers)}. *Errors* ([Problem](#problem)): {', '.join(problems)}.\n")
    return "\n".join(out)


def schemas_block(schema: dict[str, Any]) -> str:
    out = []
    for name, component in sorted(schema.get("components", {}).get("schemas", {}).items()):
        out.append(f"#### {name}\n")
        if component.get("description"):
            out.append(" ".join(component["description"].split()) + "\n")
        if component.get("properties"):
            out.append(fields_table(component) + "\n")
        elif "enum" in component:
            out.append(f"A string: {type_of(component)}.\n")
        else:
            out.append(f"{type_of(component)}.\n")
    return "\n".join(out)
