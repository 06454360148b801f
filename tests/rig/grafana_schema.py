#!/usr/bin/env python3
"""grafana_schema.py FILE...: structural check of Grafana dashboard JSON against Grafana's own
dashboard model, as published in Grafana Labs' grafana-foundation-sdk (generated from Grafana's
schemas; run through tests/rig/grafana_schema.sh, which installs a pinned version).

Per file:
  1. decode: grafana_foundation_sdk.models.dashboard.Dashboard.from_json() with the SDK's panel
     and data-query plugins registered (so a timeseries panel's options decode as timeseries
     options, a Prometheus target as a Prometheus query);
  2. unknown fields: the decoded model is encoded again (the SDK's JSONEncoder); every key of the
     file must come back, or the SDK's model has no such field (the SDK's from_json drops unknown
     keys silently, so this is how they show);
  3. types: every field of every decoded model object is checked against the model's type hints
     (str, int, bool, float, enums, literals, lists, unions, nested models); from_json does not;
  4. Grafana rules the model cannot express: panel types that Grafana ships (a panel config
     registered in the SDK), a data source and at least one query on every non-row panel, every
     query decoded as a known data source's query with an expr and a unique refId, unique panel
     ids (rows and panels inside collapsed rows included), grid positions inside the 24 columns
     and not overlapping, expanded rows holding no panels, and every $variable used in a query,
     title, variable query or data source uid defined in templating (or one of Grafana's
     built-ins).
Prints what it checked for each file; exits 1 if any file has a problem (each printed).
"""

import json
import re
import sys
import typing
import enum

from grafana_foundation_sdk.cog import plugins as cogplugins
from grafana_foundation_sdk.cog import runtime as cogruntime
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as dashboard_model

cogplugins.register_default_plugins()

GRID_COLUMNS = 24

# Fields Grafana itself writes into saved dashboards that the SDK's model does not carry.
# (path suffix, key): why it is allowed.
GRAFANA_WRITES = {
    ("templating.list[]", "definition"): "Grafana saves a query variable's query text as `definition`",
}

BUILTIN_VARIABLES = {
    "__interval", "__interval_ms", "__rate_interval", "__rate_interval_ms", "__range",
    "__range_s", "__range_ms", "__from", "__to", "__now", "__dashboard", "__org", "__user",
    "__all", "__auto", "__timeFilter", "timeFilter", "__name", "__url_time_range",
}
VARIABLE_REF = re.compile(
    r"\$\{([A-Za-z_]\w*)(?::[^}]*)?\}|\[\[([A-Za-z_]\w*)(?::[^\]]*)?\]\]|\$([A-Za-z_]\w*)"
)


def variables_in(text):
    if not isinstance(text, str):
        return set()
    return {next(g for g in m.groups() if g) for m in VARIABLE_REF.finditer(text)}


# ---------------------------------------------------------------------------------------------
# 2. unknown fields: keys of the file that do not come back from the SDK's model


def unknown_fields(original, encoded, path, problems, allowed_seen):
    if isinstance(original, dict):
        if not isinstance(encoded, dict):
            problems.append(f"{path or '.'}: the model holds {type(encoded).__name__}, the file an object")
            return
        for key, value in original.items():
            if key not in encoded:
                generic = re.sub(r"\[\d+\]", "[]", path)
                why = next((w for (suffix, k), w in GRAFANA_WRITES.items()
                            if k == key and generic.endswith(suffix)), None)
                if why:
                    allowed_seen.add(f"{generic}.{key}")
                else:
                    problems.append(f"{path + '.' if path else ''}{key}: unknown field (not in Grafana's dashboard model)")
                continue
            unknown_fields(value, encoded[key], f"{path}.{key}" if path else key, problems, allowed_seen)
    elif isinstance(original, list):
        if not isinstance(encoded, list) or len(encoded) != len(original):
            problems.append(f"{path}: list did not decode")
            return
        for i, (o, e) in enumerate(zip(original, encoded)):
            unknown_fields(o, e, f"{path}[{i}]", problems, allowed_seen)


# ---------------------------------------------------------------------------------------------
# 3. types: every decoded model object's fields against its class's type hints

_hints_cache = {}


def hints_of(cls):
    if cls not in _hints_cache:
        try:
            _hints_cache[cls] = typing.get_type_hints(cls)
        except Exception:  # pragma: no cover - a model whose hints do not resolve
            _hints_cache[cls] = {}
    return _hints_cache[cls]


def is_model(value):
    return callable(getattr(value, "to_json", None)) and not isinstance(value, cogruntime.UnknownDataquery)


def type_name(t):
    if typing.get_origin(t) is typing.Union:
        return " or ".join(type_name(a) for a in typing.get_args(t) if a is not type(None))
    if typing.get_origin(t) is typing.Literal:
        return " or ".join(json.dumps(a) for a in typing.get_args(t))
    if isinstance(t, type) and issubclass(t, enum.Enum):
        return f"{t.__name__} ({', '.join(json.dumps(m.value) for m in t)})"
    return getattr(t, "__name__", None) or str(t).replace("typing.", "")


def matches(value, hint, path, problems):
    """True if value fits hint; nested model problems are appended to problems."""
    if hint is typing.Any or hint is object:
        # Panel options and custom field config are typed `object` in the model but decode into
        # the panel plugin's own model (timeseries.Options, GraphFieldConfig, ...): check those.
        if is_model(value) and not isinstance(value, cogvariants.Dataquery):
            check_types(value, path, problems)
        return True
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union:
        if value is None and type(None) in args:
            return True
        for a in args:
            if a is type(None):
                continue
            trial = []
            if matches(value, a, path, trial):
                problems.extend(trial)
                return True
        return False
    if origin is typing.Literal:
        return value in args
    if origin is list:
        if not isinstance(value, list):
            return False
        for i, item in enumerate(value):
            if args and not matches(item, args[0], f"{path}[{i}]", problems):
                problems.append(f"{path}[{i}]: {json.dumps(item, cls=JSONEncoder)[:60]} is not {type_name(args[0])}")
        return True  # item problems are reported per item
    if origin is dict:
        if not isinstance(value, dict):
            return False
        for k, v in value.items():
            if args and not matches(v, args[1], f"{path}.{k}", problems):
                problems.append(f"{path}.{k}: {json.dumps(v, cls=JSONEncoder)[:60]} is not {type_name(args[1])}")
        return True
    if isinstance(hint, type):
        if issubclass(hint, enum.Enum):
            values = {m.value for m in hint}
            if isinstance(value, bool):
                return False
            return value in values
        if hint is bool:
            return isinstance(value, bool)
        if hint is int:
            return isinstance(value, int) and not isinstance(value, bool)
        if hint is float:
            return isinstance(value, (int, float)) and not isinstance(value, bool)
        if hint is str:
            return isinstance(value, str)
        if hint is cogvariants.Dataquery or issubclass(hint, cogvariants.Dataquery):
            if isinstance(value, hint):
                if is_model(value):
                    check_types(value, path, problems)
                return True
            return False
        if isinstance(value, hint):
            check_types(value, path, problems)
            return True
        return False
    return True  # a hint form this checker does not know: accept


def check_types(obj, path, problems):
    for attr, hint in hints_of(type(obj)).items():
        if not hasattr(obj, attr):
            continue
        value = getattr(obj, attr)
        where = f"{path}.{attr}" if path else attr
        if value is None and typing.get_origin(hint) is not typing.Union and hint not in (typing.Any, object):
            problems.append(f"{where}: required, missing")
            continue
        if not matches(value, hint, where, problems):
            shown = json.dumps(value, cls=JSONEncoder)
            problems.append(f"{where}: {shown[:80]} is not {type_name(hint)}")


# ---------------------------------------------------------------------------------------------
# 4. Grafana's rules beyond the model


def overlaps(a, b):
    return a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"] and a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"]


def check_layout(panels, where, problems):
    placed = []
    for p in panels:
        g = p.get("gridPos")
        name = f"{where + ' ' if where else ''}panel {p.get('id')} {p.get('title')!r}"
        if not isinstance(g, dict) or not all(isinstance(g.get(k), int) for k in "hwxy"):
            problems.append(f"{name}: gridPos needs integer h, w, x, y")
            continue
        if g["w"] < 1 or g["h"] < 1 or g["x"] < 0 or g["y"] < 0 or g["x"] + g["w"] > GRID_COLUMNS:
            problems.append(f"{name}: gridPos {g} outside the {GRID_COLUMNS}-column grid")
        for other_name, og in placed:
            if overlaps(g, og):
                problems.append(f"{name}: gridPos {g} overlaps {other_name} {og}")
        placed.append((name, g))
    return len(placed)


def check_file(path):
    problems = []
    notes = []
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except (OSError, ValueError) as e:
        return [f"cannot read JSON: {e}"], notes
    if not isinstance(raw, dict):
        return ["not a JSON object"], notes

    # 1. decode
    try:
        dash = dashboard_model.Dashboard.from_json(raw)
    except Exception as e:  # a wrong shape makes the generated decoder raise
        return [f"does not decode as a Grafana dashboard: {type(e).__name__}: {e}"], notes
    encoded = json.loads(json.dumps(dash, cls=JSONEncoder))
    notes.append(f"decoded by grafana_foundation_sdk Dashboard.from_json (schemaVersion {raw.get('schemaVersion')})")

    # 2. unknown fields
    allowed_seen = set()
    before = len(problems)
    unknown_fields(raw, encoded, "", problems, allowed_seen)
    notes.append("no unknown fields" if len(problems) == before else "unknown fields found")
    if allowed_seen:
        notes.append("allowed (written by Grafana, absent from the SDK model): " + ", ".join(sorted(allowed_seen)))

    # 3. types
    before = len(problems)
    check_types(dash, "", problems)
    notes.append("field types match the model" if len(problems) == before else "type errors found")

    for key in ("title", "uid", "schemaVersion"):
        if key not in raw:
            problems.append(f"{key}: missing")

    # 4. rules
    variables = (raw.get("templating") or {}).get("list") or []
    names = [v.get("name") for v in variables]
    for n in {n for n in names if names.count(n) > 1}:
        problems.append(f"templating: variable {n!r} defined {names.count(n)} times")
    defined = set(names)
    datasource_vars = {v.get("name"): v.get("query") for v in variables if v.get("type") == "datasource"}
    used = set()

    def need(text, where, own=None):
        for name in variables_in(text):
            used.add(name)
            if name == own:
                problems.append(f"{where}: refers to itself (${name})")
            elif name not in defined and name not in BUILTIN_VARIABLES:
                problems.append(f"{where}: ${name} is not a variable of this dashboard")

    def need_datasource(ds, where):
        if not isinstance(ds, dict):
            return
        need(ds.get("uid"), f"{where} datasource uid")
        for name in variables_in(ds.get("uid")):
            if name in defined and name not in datasource_vars:
                problems.append(f"{where}: datasource uid ${name} is not a datasource variable")
            elif name in datasource_vars and ds.get("type") and datasource_vars[name] != ds.get("type"):
                problems.append(f"{where}: datasource type {ds.get('type')!r} but ${name} lists {datasource_vars[name]!r} data sources")

    for v in variables:
        where = f"variable {v.get('name')!r}"
        q = v.get("query")
        need(q.get("query") if isinstance(q, dict) else q, f"{where} query", own=v.get("name"))
        need(v.get("definition"), f"{where} definition", own=v.get("name"))
        need_datasource(v.get("datasource"), where)
        if v.get("type") == "query" and not v.get("datasource"):
            problems.append(f"{where}: a query variable needs a datasource")

    top = raw.get("panels") or []
    all_panels = []
    rows = 0
    for p in top:
        all_panels.append(p)
        if p.get("type") == "row":
            rows += 1
            inner = p.get("panels") or []
            if not p.get("collapsed") and inner:
                problems.append(f"row {p.get('id')} {p.get('title')!r}: an expanded row holds no panels (they follow it at top level)")
            for c in inner:
                all_panels.append(c)
                if c.get("type") == "row":
                    problems.append(f"row {p.get('id')}: a row inside a row")
                if isinstance(c.get("gridPos"), dict) and isinstance(p.get("gridPos"), dict) and \
                        c["gridPos"].get("y", 0) <= p["gridPos"].get("y", 0):
                    problems.append(f"panel {c.get('id')} {c.get('title')!r}: placed above its row {p.get('id')}")
            if inner:
                check_layout(inner, f"row {p.get('id')}:", problems)
    check_layout(top, "", problems)

    ids = [p.get("id") for p in all_panels]
    for i in {i for i in ids if ids.count(i) > 1}:
        problems.append(f"panel id {i} used {ids.count(i)} times")
    for p in all_panels:
        if not isinstance(p.get("id"), int):
            problems.append(f"panel {p.get('title')!r}: no integer id")

    known_types = set()
    queries = 0
    ds_types = set()
    for p in all_panels:
        kind = p.get("type")
        name = f"panel {p.get('id')} {p.get('title')!r}"
        need(p.get("title"), f"{name} title")
        need(p.get("repeat"), f"{name} repeat")
        if kind == "row":
            continue
        if cogruntime.panelcfg_config(kind or "") is None:
            problems.append(f"{name}: panel type {kind!r} is not one Grafana ships")
        else:
            known_types.add(kind)
        targets = p.get("targets") or []
        if not targets:
            problems.append(f"{name}: no queries (targets)")
        if not p.get("datasource") and not all(t.get("datasource") for t in targets):
            problems.append(f"{name}: no datasource (on the panel or on every query)")
        need_datasource(p.get("datasource"), name)
        if isinstance(p.get("datasource"), dict):
            ds_types.add(p["datasource"].get("type"))
        refs = [t.get("refId") for t in targets]
        for r in {r for r in refs if refs.count(r) > 1}:
            problems.append(f"{name}: refId {r!r} used {refs.count(r)} times")
        for t in targets:
            queries += 1
            tname = f"{name} query {t.get('refId')}"
            ds_type = (p.get("datasource") or {}).get("type") or (t.get("datasource") or {}).get("type") or ""
            decoded = cogruntime.dataquery_from_json(t, ds_type)
            if isinstance(decoded, cogruntime.UnknownDataquery):
                problems.append(f"{tname}: data source type {ds_type!r} is not one the model knows")
            if not t.get("refId"):
                problems.append(f"{tname}: no refId")
            if ds_type == "prometheus" and not (isinstance(t.get("expr"), str) and t["expr"].strip()):
                problems.append(f"{tname}: no expr")
            need(t.get("expr"), tname)
            need(t.get("legendFormat"), f"{tname} legendFormat")
            need_datasource(t.get("datasource"), tname)

    notes.append(f"{len(all_panels)} panels ({rows} rows, {len(all_panels) - len(top)} inside collapsed rows), "
                 f"types {sorted(known_types)}, {queries} queries on {sorted(t for t in ds_types if t)}")
    notes.append(f"panel ids unique, gridPos inside {GRID_COLUMNS} columns without overlaps" if not any(
        "gridPos" in p or "panel id" in p for p in problems) else "layout or id problems found")
    notes.append(f"{len(variables)} variables {names}; used: {sorted(used)}")
    return problems, notes


def main(argv):
    if not argv:
        print("usage: grafana_schema.py DASHBOARD.json...", file=sys.stderr)
        return 2
    failed = 0
    for path in argv:
        problems, notes = check_file(path)
        print(f"{path}: {'FAIL' if problems else 'OK'}")
        for n in notes:
            print(f"  checked: {n}")
        for p in problems:
            print(f"  problem: {p}")
        failed += bool(problems)
    print(f"grafana_schema: {len(argv) - failed} of {len(argv)} dashboards pass")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
