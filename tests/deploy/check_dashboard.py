#!/usr/bin/env python3
"""Checks deploy/grafana/dify-gateway.json: valid JSON, every panel on the datasource
variable, and every query valid PromQL (parsed by promtool, as recording rules, with the
dashboard's variables filled in). Exit status 0 when all hold; each problem is printed."""
import json
import pathlib
import re
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "dify-gateway.json"


def main() -> int:
    problems = []
    dash = json.loads(DASHBOARD.read_text())
    rules = []
    for panel in dash["panels"]:
        if panel.get("datasource", {}).get("uid") != "${datasource}":
            problems.append(f"panel {panel['title']!r}: not on the ${{datasource}} variable")
        if not panel.get("targets"):
            problems.append(f"panel {panel['title']!r}: no queries")
        for target in panel.get("targets", []):
            expr = target["expr"].replace("$__rate_interval", "5m").replace("$tenant", ".*")
            if "$" in expr:
                problems.append(f"panel {panel['title']!r}: an unknown variable in {target['expr']!r}")
            if not re.search(r"dify_gateway_[a-z_]+", expr):
                problems.append(f"panel {panel['title']!r}: a query on no gateway metric")
            rules.append({"record": f"dashboard:panel{panel['id']}:{target['refId']}", "expr": expr})
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        # JSON is YAML: promtool reads it as a rule file.
        json.dump({"groups": [{"name": "dashboard", "rules": rules}]}, f)
        path = f.name
    checked = subprocess.run(["promtool", "check", "rules", path], capture_output=True, text=True)
    pathlib.Path(path).unlink()
    if checked.returncode != 0:
        problems.append("promtool rejects a query:\n" + checked.stdout + checked.stderr)
    for p in problems:
        print(p, file=sys.stderr)
    print(f"{len(rules)} queries in {len(dash['panels'])} panels checked" + ("" if not problems else ": FAILED"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
