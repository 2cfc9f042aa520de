#!/usr/bin/env python3
"""Checks charts/spore with Helm's own linter (Helm v4, from the helm-sdkpy wheel's shared
library, called through ctypes) and with JSON Schema. Run through hack/helm-lint.sh.

1. helm lint with the default values passes (errors and warnings both fail);
2. helm lint with every option on (charts/spore/ci/all-on-values.yaml over the defaults) passes;
3. helm lint fails on a broken template and on a template that renders to broken YAML, and on
   values that the schema rejects;
4. values.schema.json accepts the defaults and the all-on values and rejects bad values;
5. charts/spore/crds/wasmapp.yaml equals crds/wasmapp.yaml.
"""

import copy
import ctypes
import json
import pathlib
import shutil
import sys
import tempfile

import jsonschema
import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "spore"
SEVERITY = {0: "unknown", 1: "info", 2: "warning", 3: "error"}


class Helm:
    """The few functions of libhelm_sdkpy.so this check needs."""

    def __init__(self, library: pathlib.Path):
        self.lib = ctypes.CDLL(str(library))
        self.lib.helm_sdkpy_config_create.argtypes = [ctypes.c_char_p] * 4 + [
            ctypes.POINTER(ctypes.c_ulonglong)
        ]
        self.lib.helm_sdkpy_config_create.restype = ctypes.c_int
        self.lib.helm_sdkpy_lint.argtypes = [
            ctypes.c_ulonglong,
            ctypes.c_char_p,
            ctypes.POINTER(ctypes.c_void_p),
        ]
        self.lib.helm_sdkpy_lint.restype = ctypes.c_int
        self.lib.helm_sdkpy_last_error.restype = ctypes.c_void_p
        self.lib.helm_sdkpy_version_string.restype = ctypes.c_void_p
        self.lib.helm_sdkpy_free.argtypes = [ctypes.c_void_p]
        handle = ctypes.c_ulonglong()
        rc = self.lib.helm_sdkpy_config_create(b"default", None, None, b"{}", ctypes.byref(handle))
        if rc != 0:
            raise RuntimeError(f"helm_sdkpy_config_create failed: {self.last_error()}")
        self.handle = handle.value

    def last_error(self) -> str:
        err = self.lib.helm_sdkpy_last_error()
        return ctypes.string_at(err).decode() if err else "(no message)"

    def version(self) -> str:
        ptr = self.lib.helm_sdkpy_version_string()
        return ctypes.string_at(ptr).decode() if ptr else "?"

    def lint(self, chart: pathlib.Path) -> list:
        """Helm's lint messages for `chart` as (severity, path) pairs."""
        out = ctypes.c_void_p()
        rc = self.lib.helm_sdkpy_lint(self.handle, str(chart).encode(), ctypes.byref(out))
        if rc != 0:
            raise RuntimeError(f"helm lint could not run on {chart}: {self.last_error()}")
        if not out.value:
            raise RuntimeError("helm lint returned no result")
        result = json.loads(ctypes.string_at(out.value).decode())
        self.lib.helm_sdkpy_free(out)
        messages = [(m.get("Severity", 0), m.get("Path", "")) for m in result.get("Messages") or []]
        if result.get("Errors"):
            messages.append((3, f"{len(result['Errors'])} error(s)"))
        return messages


def deep_merge(base, override):
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def chart_copy(work: pathlib.Path, name: str, values=None, templates=None) -> pathlib.Path:
    dest = work / name / "spore"
    shutil.copytree(CHART, dest)
    if values is not None:
        (dest / "values.yaml").write_text(yaml.safe_dump(values, sort_keys=False))
    for file, text in (templates or {}).items():
        (dest / "templates" / file).write_text(text)
    return dest


failures = []


def check(ok: bool, what: str, detail: str = ""):
    print(f"{'ok  ' if ok else 'FAIL'} {what}{(': ' + detail) if detail and not ok else ''}")
    if not ok:
        failures.append(what)


def problems(messages):
    return [f"{SEVERITY.get(s, s)} {p}" for s, p in messages if s >= 2]


def main(library: str) -> int:
    helm = Helm(pathlib.Path(library))
    print(f"helm (libhelm_sdkpy) {helm.version()}")
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    all_on = deep_merge(defaults, yaml.safe_load((CHART / "ci" / "all-on-values.yaml").read_text()))
    schema = json.loads((CHART / "values.schema.json").read_text())

    with tempfile.TemporaryDirectory(prefix="spore-helm-lint-") as tmp:
        work = pathlib.Path(tmp)
        found = problems(helm.lint(CHART))
        check(not found, "helm lint, default values", "; ".join(found))
        found = problems(helm.lint(chart_copy(work, "all-on", values=all_on)))
        check(not found, "helm lint, every option on (ci/all-on-values.yaml)", "; ".join(found))

        broken_template = {"broken.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Values.nameOverride \n"}
        found = problems(helm.lint(chart_copy(work, "broken-template", templates=broken_template)))
        check(bool(found), "helm lint fails on a broken template", "lint passed")
        broken_yaml = {"broken.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n   labels: {{ .Release.Name }}\n data: [\n"}
        found = problems(helm.lint(chart_copy(work, "broken-yaml", templates=broken_yaml)))
        check(bool(found), "helm lint fails on a template that renders to broken YAML", "lint passed")
        bad = deep_merge(defaults, {"nodeInstaller": {"preset": "docker"}})
        found = problems(helm.lint(chart_copy(work, "bad-values", values=bad)))
        check(bool(found), "helm lint fails on values the schema rejects", "lint passed")

    validator = jsonschema.Draft7Validator(schema)
    jsonschema.Draft7Validator.check_schema(schema)
    errors = [e.message for e in validator.iter_errors(defaults)]
    check(not errors, "values.schema.json accepts the defaults", "; ".join(errors))
    errors = [e.message for e in validator.iter_errors(all_on)]
    check(not errors, "values.schema.json accepts the all-on values", "; ".join(errors))
    bad_values = {
        "an unknown top-level key": {"operatorr": {}},
        "an unknown preset": {"nodeInstaller": {"preset": "docker"}},
        "negative replicas": {"operator": {"replicas": -1}},
        "a port out of range": {"operator": {"metricsPort": 70000}},
        "a relative install dir": {"nodeInstaller": {"installDir": "opt/spore"}},
        "a string for a boolean": {"runtimeClass": {"create": "yes"}},
        "an image without repository": {"operator": {"image": {"repository": ""}}},
        "a bad pull policy": {"nodeInstaller": {"image": {"pullPolicy": "Sometimes"}}},
        "a pull secret without name": {"imagePullSecrets": [{"nam": "x"}]},
        "a zero interval": {"nodeInstaller": {"intervalSeconds": 0}},
        "an unknown restart strategy": {"nodeInstaller": {"containerdRestart": "kill"}},
    }
    for what, override in bad_values.items():
        errors = list(validator.iter_errors(deep_merge(defaults, override)))
        check(bool(errors), f"values.schema.json rejects {what}", "accepted")

    chart_crd = CHART / "crds" / "wasmapp.yaml"
    repo_crd = ROOT / "crds" / "wasmapp.yaml"
    if not repo_crd.exists():
        check(False, "crds/wasmapp.yaml exists (generated by `spore-operator crd`)", "missing")
    else:
        same = chart_crd.exists() and chart_crd.read_bytes() == repo_crd.read_bytes()
        check(same, "charts/spore/crds/wasmapp.yaml equals crds/wasmapp.yaml",
              "differ: cp crds/wasmapp.yaml charts/spore/crds/wasmapp.yaml")

    if failures:
        print(f"helm-lint: {len(failures)} check(s) failed")
        return 1
    print("helm-lint: all checks passed")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: helm_lint.py PATH/TO/libhelm_sdkpy.so", file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
