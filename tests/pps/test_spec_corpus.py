"""A corpus of specs in Pachyderm's forms, applied as a Pachyderm user would (issue 20).

tests/pps/corpus holds JSON and YAML in both casings, files of several documents (YAML
``---``, JSON objects separated by ``---``), tabs inside YAML flow collections, a jsonnet
template with its ``.args.yaml``, Kubernetes settings, resources, secrets by name, one repo
read under two names, a union reusing a name and a join without ``join_on``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import tusk

sys.path.insert(0, str(Path(__file__).parents[1] / "cli"))

from clihelpers import Tusk

ENGINES = ("sqlite", "postgresql")
CORPUS = Path(__file__).parent / "corpus"
PIPELINES = {"copy-1", "edges", "joined", "montage", "same-repo-twice", "tabbed", "union-one-name"}


def test_the_corpus_applies_as_written_and_twice_changes_nothing(
    tmp_path: Path, engine: str
) -> None:
    t = Tusk(tmp_path / "home")
    plan = t.json("apply", "-f", str(CORPUS), "--dry-run")
    assert {c["name"] for c in plan["changes"] if c["kind"] == "pipeline"} == PIPELINES
    applied = t.json("apply", "-f", str(CORPUS))
    actions = {(c["kind"], c["name"]): c["action"] for c in applied["changes"]}
    assert {n for (k, n), a in actions.items() if k == "pipeline" and a == "create"} == PIPELINES
    again = t.json("apply", "-f", str(CORPUS))
    assert {c["action"] for c in again["changes"]} == {"unchanged"}

    edges = t("inspect", "pipeline", "edges").stdout
    assert "recorded, not applied here" in edges  # scheduling_spec, pod_patch, tolerations...
    assert "enforced" in edges  # the memory limit
    with tusk.Client(tmp_path / "home") as c:
        spec = c.inspect_pipeline("edges").spec
        assert spec["resource_limits"]["memory"] == "256MB"
        assert spec["scheduling_spec"]["nodeSelector"] == {"disktype": "ssd"}
        assert spec["transform"]["image_pull_secrets"] == ["regcred"]
        montage = c.inspect_pipeline("montage").spec
        assert montage["input"]["cross"][1]["pfs"]["glob"] == "/*"  # "*" means "/*"
        assert [s["name"] for s in montage["transform"]["secrets"]] == ["registry", "registry"]
        assert c.inspect_branch("same-repo-twice@master").provenance == ["images@master"]
