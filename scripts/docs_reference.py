"""The docs site's reference pages, generated from the code at build time (never committed).

Example::

    python scripts/docs_reference.py /tmp/reference     # writes cli.md, settings.md, http.md, openapi.json
    mkdocs build --strict                               # mkdocs.yml names this file as a hook

- `reference/cli.md`: every `qc` command, its usage, arguments and options, from the Typer app
  (qc/cli.py), so it cannot drift from `qc ... --help`.
- `reference/settings.md`: every `QC_*` variable in one place, from the settings classes (the
  pydantic-settings models below) plus the few variables read outside them (`OTHER_VARIABLES`);
  tests/test_docs_site.py checks that every `QC_*` name in the source is on it.
- `reference/http.md` and `reference/openapi.json`: the service's routes and schemas from its
  OpenAPI document (serving/app.py builds it; nothing is started).

As an MkDocs hook, `on_files` adds the pages to the build in memory: the docs folder holds
no generated file to go stale.
"""

from __future__ import annotations

import html
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # mkdocs loads a hook by path; the project may not be installed
    sys.path.insert(0, str(REPO))

# The settings classes, each with the module that holds it and who reads it.
SETTINGS_CLASSES = (
    ("inspection.settings", "Settings", "every part of qc: where state lives, how the detector runs"),
    ("serving.settings", "ServeSettings", "`qc serve`: the inspection service, its pages and analytics"),
    ("labeling.settings", "LabelSettings", "`qc label` and the loop's pull: the Label Studio bridge"),
    ("training.settings", "TrainSettings", "`qc train` and every training qc runs: how it uses the machine"),
    ("training.loop", "LoopSettings", "`qc loop` and the Loop page's turns"),
)
# QC_* variables read outside the settings classes: (name, who reads it, what it does).
OTHER_VARIABLES = (
    ("QC_CONFIG", "inspection/settings.py",
     ("A YAML file whose keys (without the prefix, e.g. `home: /srv/qc`) give any setting on this page; "
     "the environment wins over it.")),
    ("QC_<NAME>_FILE", "inspection/settings.py",
     ("Any setting read from a file, as Docker and Kubernetes mount secrets "
     "(`QC_DATABASE_URL_FILE=/run/secrets/qc-db`); setting both `QC_<NAME>` and `QC_<NAME>_FILE` is an error.")),
    ("QC_USER_PASSWORD", "qc/commands/users.py",
     "The password `qc users add` and `qc users passwd` take instead of asking (scripts)."),
    ("QC_STATION_KEY", "agent/config.py",
     ("The station's API key on a station PC: the variable `service.key_env` names by default "
     "(docs/station.md).")),
    ("QC_TEST_POSTGRES_URL", "tests/conftest.py",
     "Tests only: a PostgreSQL URL; the `postgres` tests skip without it."),
)


# -- CLI -----------------------------------------------------------------------------------


def cli_reference() -> str:
    import typer

    from qc.cli import app

    root = typer.main.get_command(app)
    lines = ["# Command reference", "",
             ("Every `qc` command with its arguments and options, generated from the command itself "
             "(`qc/cli.py`) when this site is built: the same text as `qc COMMAND --help`. "
             "Settings that are not options are `QC_*` variables: see [Settings](settings.md)."), ""]

    # Typer carries its own copy of click (typer._click): its objects are used as they come.
    def walk(command: Any, path: list[str]) -> None:
        if getattr(command, "hidden", False):
            return
        context = command.context_class(command, info_name=" ".join(path))
        if path != ["qc"]:
            lines.extend([f"## {' '.join(path)}", ""])
            help_text = (command.help or command.short_help or "").strip()
            if help_text:
                lines.extend([_text(help_text), ""])
            lines.extend(["```", command.get_usage(context).strip(), "```", ""])
            params = [p for p in command.params if not getattr(p, "hidden", False) and p.name != "help"]
            if params:
                lines.extend(["| argument or option | default | what it does |", "|---|---|---|"])
                lines.extend(f"| {_cell(_param_name(param))} | {_cell(_param_default(param))} | "
                             f"{_cell(getattr(param, 'help', None) or '')} |" for param in params)
                lines.append("")
        if hasattr(command, "list_commands"):  # a group
            for name in sorted(command.list_commands(context)):
                sub = command.get_command(context, name)
                if sub is not None:
                    walk(sub, [*path, name])

    walk(root, ["qc"])
    return "\n".join(lines)


def _param_name(param: Any) -> str:
    if param.param_type_name == "argument":
        return f"{param.name.upper()}{'' if param.required else ' (optional)'}"
    names = ", ".join([*param.opts, *param.secondary_opts])
    return names + (" (required)" if param.required else "")


def _param_default(param: Any) -> str:
    default = param.default
    if default is None or (getattr(param, "is_flag", False) and default is False and not param.secondary_opts):
        return ""
    if callable(default):
        return "(computed)"
    if isinstance(default, (list, tuple)):
        return ", ".join(str(v) for v in default)
    return str(default)


# -- settings ------------------------------------------------------------------------------


def settings_reference() -> str:
    import importlib

    lines = ["# Settings", "",
             ("Every `QC_*` variable in one place, generated from the settings classes when this site is "
             "built. Each is an environment variable, a line of a `.env` file in the working folder, or a "
             "key (without `QC_`, in lower case) of the YAML file named by `QC_CONFIG`; the environment "
             "wins. A value of the wrong kind stops the command with the variable's name. "
             "Command options (see the [command reference](cli.md)) win over these for one run."), ""]
    for module_name, class_name, readers in SETTINGS_CLASSES:
        cls = getattr(importlib.import_module(module_name), class_name)
        base = cls.__mro__[1]
        inherited = getattr(base, "model_fields", {})
        own = {name: field for name, field in cls.model_fields.items()
               if name not in inherited or inherited[name].default != field.default}
        source = module_name.replace(".", "/") + ".py"
        lines.extend([f"## {class_name}", "", f"Read by {readers} (`{source}`)."
                      + (f" It also reads every setting of `{base.__name__}`." if base.__name__ != "BaseSettings"
                         else ""), "", "| variable | default | what it sets |", "|---|---|---|"])
        for name, field in own.items():
            variable = f"QC_{name.upper()}"
            overrides = " (the service's own default)" if name in inherited else ""
            lines.append(f"| `{variable}` | {_cell(_setting_default(field))} | "
                         f"{_cell((field.description or '') + overrides)} |")
        lines.append("")
    lines.extend(["## Read outside the settings classes", "", "| variable | read by | what it does |",
                  "|---|---|---|"])
    for variable, reader, what in OTHER_VARIABLES:
        lines.append(f"| `{variable}` | `{reader}` | {_cell(what)} |")
    lines.append("")
    return "\n".join(lines)


def _setting_default(field: Any) -> str:
    from enum import Enum

    from pydantic_core import PydanticUndefined

    if field.default_factory is not None:
        return "~/.qc" if field.default_factory.__name__ == "default_home" else "(computed)"
    default = field.default
    if default is PydanticUndefined:
        return "(required)"
    if isinstance(default, Enum):
        default = default.value
    if default == "":
        return "(empty)"
    return f"`{default}`" if not isinstance(default, bool) else f"`{str(default).lower()}`"


# -- HTTP ----------------------------------------------------------------------------------


def openapi() -> dict[str, Any]:
    from serving.app import create_app
    from serving.settings import ServeSettings

    with tempfile.TemporaryDirectory(prefix="qc-openapi-") as home:
        return create_app(ServeSettings(home=Path(home))).openapi()


def http_reference(schema: dict[str, Any]) -> str:
    info = schema["info"]
    lines = [f"# HTTP API: {info['title']} {info['version']}", "", _text(info.get("description", "")), "",
             ("Generated from the service's OpenAPI document when this site is built; the document itself is "
             "[openapi.json](openapi.json), and a running service shows it at `/docs` (Swagger UI, served by "
             "the service itself) and `/openapi.json`. What each route is for, with examples: "
             "[the inspection service](../serving.md), [review](../review.md), [analytics](../analytics.md)."), ""]
    by_tag: dict[str, list[tuple[str, str, dict]]] = {}
    errors: dict[str, str] = {}
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            tag = (operation.get("tags") or ["other"])[0]
            by_tag.setdefault(tag, []).append((method.upper(), path, operation))
    for tag in sorted(by_tag):
        lines.extend([f"## {tag}", ""])
        for method, path, operation in by_tag[tag]:
            lines.extend([f"### `{method} {path}`", ""])
            about = operation.get("description") or operation.get("summary") or ""
            if about:
                lines.extend([_text(about), ""])
            params = operation.get("parameters") or []
            if params:
                lines.extend(["| parameter | in | type | what it is |", "|---|---|---|---|"])
                for param in params:
                    required = " (required)" if param.get("required") else ""
                    about = param.get("description") or param.get("schema", {}).get("description") or ""
                    lines.append(f"| `{param['name']}`{required} | {param['in']} | "
                                 f"{_cell(_type(param.get('schema', {})))} | {_cell(about)} |")
                lines.append("")
            body = operation.get("requestBody")
            if body:
                kinds = ", ".join(f"`{kind}` {_type(content.get('schema', {}))}".rstrip()
                                  for kind, content in body.get("content", {}).items())
                lines.extend([f"Body: {_cell(kinds)}", ""])
            answers, refusals = [], []
            for status, response in operation.get("responses", {}).items():
                if status[0] in "45":  # the same for every route: listed once, under Errors
                    errors.setdefault(status, response.get("description", ""))
                    refusals.append(f"`{status}`")
                    continue
                content = response.get("content", {})
                kind = next(iter(content.values()), {}).get("schema", {}) if content else {}
                answers.append(f"`{status}` {_cell(response.get('description', ''))}"
                               + (f" ({_cell(_type(kind))})" if kind else ""))
            lines.extend(["Answers: " + "; ".join(answers) + (f"; refusals {', '.join(refusals)} "
                                                               "(see [Errors](#errors))" if refusals else ""), ""])
    if errors:
        lines.extend(["## Errors", "", "Every refusal is a JSON `Problem` whose `detail` says what to fix.", "",
                      "| status | when |", "|---|---|"])
        lines.extend(f"| `{status}` | {_cell(errors[status])} |" for status in sorted(errors))
        lines.append("")
    components = schema.get("components", {}).get("schemas", {})
    if components:
        lines.extend(["## Schemas", ""])
        for name in sorted(components):
            component = components[name]
            lines.extend([f"### {name}", ""])
            if component.get("description"):
                lines.extend([_text(component["description"]), ""])
            properties = component.get("properties") or {}
            if properties:
                required = set(component.get("required") or [])
                lines.extend(["| field | type | what it is |", "|---|---|---|"])
                for field, spec in properties.items():
                    mark = " (required)" if field in required else ""
                    lines.append(f"| `{field}`{mark} | {_cell(_type(spec))} | {_cell(spec.get('description') or '')} |")
                lines.append("")
            elif component.get("enum"):
                lines.extend(["One of " + ", ".join(f"`{value}`" for value in component["enum"]), ""])
    return "\n".join(lines)


def _type(spec: dict[str, Any]) -> str:
    if "$ref" in spec:
        return spec["$ref"].rsplit("/", 1)[-1]
    for combined in ("anyOf", "oneOf", "allOf"):
        if combined in spec:
            return " or ".join(_type(part) for part in spec[combined])
    kind = spec.get("type", "")
    if kind == "array":
        return f"list of {_type(spec.get('items', {}))}"
    if kind == "object" and "additionalProperties" in spec and isinstance(spec["additionalProperties"], dict):
        return f"map of {_type(spec['additionalProperties'])}"
    if "enum" in spec:
        return " | ".join(str(value) for value in spec["enum"])
    return kind or "any"


# -- markdown ------------------------------------------------------------------------------


def _text(text: str) -> str:
    """Prose from docstrings and help: HTML-escaped outside `code` (which Markdown escapes
    itself), so `<key>` shows as written."""
    parts = text.split("`")
    return "`".join(html.escape(part, quote=False) if n % 2 == 0 else part for n, part in enumerate(parts))


def _cell(text: str) -> str:
    """One table cell: escaped, on one line, with pipes that do not split the row."""
    return _text(" ".join(str(text).split())).replace("|", "\\|")


def pages() -> dict[str, str]:
    """Site path -> content of every generated page."""
    schema = openapi()
    return {"reference/cli.md": cli_reference(), "reference/settings.md": settings_reference(),
            "reference/http.md": http_reference(schema), "reference/openapi.json": json.dumps(schema, indent=1)}


# -- the MkDocs hook -----------------------------------------------------------------------


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    for path, content in pages().items():
        files.append(File.generated(config, path, content=content))
    return files


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "reference")
    for path, content in pages().items():
        target = out / Path(path).name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
        print(target)
