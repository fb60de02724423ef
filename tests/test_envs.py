"""The conda environments (envs/*.yaml) parse and hold every package their rules' code imports.

The imports are computed from the source, not listed by hand: each rule's
script (workflow/scripts/*.py, found through the rule files' `script:` and
`conda:` directives), the scripts it imports, and every attnlab module it runs,
with the attnlab modules' own imports followed transitively (lazy ones too).
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow" / "lib"))
import pkgdeps  # noqa: E402

# import name -> the conda-forge / PyPI names that provide it
PROVIDERS = {
    "torch": {"pytorch", "pytorch-cpu", "pytorch-gpu", "torch"},
    "torchvision": {"torchvision"},
    "numpy": {"numpy"},
    "pandas": {"pandas"},
    "matplotlib": {"matplotlib", "matplotlib-base"},
    "yaml": {"pyyaml"},
    "PIL": {"pillow"},
    "nltk": {"nltk"},
    "typst": {"typst"},
    "jsonschema": {"jsonschema"},
    "playwright": {"playwright"},
}


def _rules() -> dict[str, dict]:
    """rule name -> {"env": env file, "script": script file} from workflow/rules/*.smk."""
    rules = {}
    for smk in sorted((ROOT / "workflow" / "rules").glob("*.smk")):
        text = smk.read_text()
        for m in re.finditer(r"^rule (\w+):\n(.*?)(?=^rule |\Z)", text, re.M | re.S):
            body = m.group(2)
            env = re.search(r"conda:\s*\n\s*[\"']([^\"']+)[\"']", body)
            script = re.search(r"script:\s*\n\s*[\"']([^\"']+)[\"']", body)
            if script:
                rules[m.group(1)] = {
                    "env": (smk.parent / env.group(1)).resolve() if env else None,
                    "script": (smk.parent / script.group(1)).resolve(),
                }
    return rules


def _env_packages(path: Path) -> set[str]:
    spec = yaml.safe_load(path.read_text())
    names = set()
    for dep in spec["dependencies"]:
        items = dep["pip"] if isinstance(dep, dict) else [dep]
        for item in items:
            names.add(re.split(r"[<>=!~\s\[]", item.split("::")[-1], maxsplit=1)[0].lower())
    return names


def _script_imports(script: Path, seen: set[Path] | None = None) -> set[str]:
    """Third-party top-level imports of a rule script, its helper scripts and the attnlab code it runs."""
    seen = seen if seen is not None else set()
    if script in seen:
        return set()
    seen.add(script)
    tree = ast.parse(script.read_text())
    third, ours = set(), set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names = [node.module or ""]
            if names[0] == "attnlab":
                ours |= {f"attnlab.{a.name}" for a in node.names}
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and \
                re.fullmatch(r"attnlab(\.\w+)+", node.value):
            ours.add(node.value)  # a module handed to run_stage / importlib
        for name in names:
            top = name.split(".")[0]
            sibling = script.parent / f"{top}.py"
            if top == "attnlab":
                ours.add(name)
            elif sibling.is_file():
                third |= _script_imports(sibling, seen)
            elif top not in sys.stdlib_module_names and top != "__future__":
                third.add(top)
    entries = set(ours) | {f"{m}.__main__" for m in ours}
    third |= pkgdeps.third_party_imports(ROOT / "src", *sorted(entries))
    return third


def test_env_files_parse_and_pin_python():
    envs = sorted((ROOT / "envs").glob("*.yaml"))
    assert {p.stem for p in envs} >= {"data", "train", "report"}
    for path in envs:
        spec = yaml.safe_load(path.read_text())
        assert "conda-forge" in spec["channels"], path
        assert any(isinstance(d, str) and d.startswith("python=") for d in spec["dependencies"]), path


def test_every_rule_with_a_script_has_an_env():
    rules = _rules()
    expected = {"download_cifar10", "download_shakespeare", "prepare_cifar10", "build_vocab", "module_checks",
                "rnn_vs_attention", "train_vit", "evaluate_vit", "vit_heatmaps", "train_gpt", "evaluate_gpt",
                "generate_gpt"}
    assert expected <= set(rules), sorted(expected - set(rules))
    for name, rule in rules.items():
        assert rule["env"] is not None and rule["env"].is_file(), f"rule {name}: conda env {rule['env']}"
        assert rule["script"].is_file(), f"rule {name}: script {rule['script']}"


@pytest.mark.parametrize("rule", sorted(_rules()))
def test_env_lists_what_the_rule_imports(rule):
    info = _rules()[rule]
    imports = _script_imports(info["script"])
    assert imports, f"found no imports for {rule}"  # every stage uses at least yaml and torch
    unknown = imports - set(PROVIDERS)
    assert not unknown, f"rule {rule} imports {sorted(unknown)}: add them to PROVIDERS and to {info['env'].name}"
    have = _env_packages(info["env"])
    missing = sorted(name for name in imports if not (PROVIDERS[name] & have))
    assert not missing, f"{info['env'].relative_to(ROOT)} lacks {missing}, which rule {rule} imports"


def test_import_walk_sees_lazy_imports():
    """The walk must follow imports inside functions: the GPT stages tokenize with nltk lazily."""
    assert "nltk" in _script_imports(ROOT / "workflow" / "scripts" / "evaluate_gpt.py")
    assert "nltk" not in pkgdeps.third_party_imports(ROOT / "src", "attnlab.vit.train")
