"""module_checks stage: the starter code's Problem 2 checks, run on attnlab.transformer.

    python -m attnlab.checks --out-dir DIR

writes DIR/module_checks.json and DIR/attention_mask.png. A failing check
fails the stage: nothing is written at either output path, the failing
checks are printed to stderr (with the full record as JSON), then one
``error:`` line, and the exit status is 2, so the pipeline stops before anything downstream trusts a
broken transformer. ``run_checks`` raises ``ChecksFailed`` in that case.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from attnlab.cli import stage_parser
from attnlab.errors import AttnlabError, cli_main
from attnlab.io import atomic_path, write_json

JSON_NAME = "module_checks.json"
FIGURE_NAME = "attention_mask.png"


class ChecksFailed(AttnlabError, RuntimeError):
    def __init__(self, failed: list[str], record: dict, note: str = "") -> None:
        super().__init__("module checks failed: " + ", ".join(failed) + (f"; {note}" if note else ""))
        self.failed, self.record = failed, record


def collect(seed: int = 0) -> tuple[dict, dict]:
    """Run all checks and the ViT demo; returns (record for module_checks.json, tensors for the figure)."""
    from dataclasses import asdict

    from attnlab.checks.suite import ChecksConfig, run_suite
    from attnlab.checks.vit_demo import vit_sincos_demo

    start = time.perf_counter()
    cfg = ChecksConfig(seed=seed)
    results, example = run_suite(cfg)
    demo, demo_check = vit_sincos_demo(seed)
    results.append(demo_check)
    record = {
        "checks": [r.to_json() for r in results],
        "all_passed": all(r.passed for r in results),
        "n_checks": len(results),
        "W_O_shape": example["W_O_shape"],
        "example": {
            **asdict(cfg),
            "mask": example["mask"].tolist(),
            "A_head": [[round(v, 6) for v in row] for row in example["A_head"].tolist()]
            if "A_head" in example else None,
        },
        "vit_sincos_demo": demo,
        "seconds": round(time.perf_counter() - start, 3),
    }
    return record, example


def run_checks(out_dir: str | Path, seed: int = 0) -> dict:
    """Run the checks; on success write module_checks.json and attention_mask.png into out_dir."""
    record, example = collect(seed)
    if not record["all_passed"]:
        raise ChecksFailed([c["name"] for c in record["checks"] if not c["passed"]], record)
    from attnlab.checks.figure import plot_mask_and_attention

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / FIGURE_NAME) as tmp:
        plot_mask_and_attention(example["mask"].numpy(), example["A_head"].numpy(), tmp)
    write_json(out_dir / JSON_NAME, record)
    return record


@cli_main
def main(argv: list[str] | None = None) -> int:
    parser = stage_parser("attnlab.checks", "Run the homework's Problem 2 checks on attnlab.transformer and record "
                          f"the outcome ({JSON_NAME}, {FIGURE_NAME}). Exits 2 and writes nothing if a check fails.")
    parser.add_argument("--out-dir", required=True, type=Path, help="folder for the outputs")
    parser.add_argument("--seed", type=int, default=0, help="seed for the random inputs and weights")
    args = parser.parse_args(argv)
    try:
        record = run_checks(args.out_dir, seed=args.seed)
    except ChecksFailed as exc:
        for c in exc.record["checks"]:
            if not c["passed"]:
                print(f"FAILED {c['name']}: {c['detail']}", file=sys.stderr)
        print(json.dumps(exc.record, indent=2), file=sys.stderr)
        raise ChecksFailed(exc.failed, exc.record, f"nothing written to {args.out_dir}") from None
    demo = record["vit_sincos_demo"]["status"]
    print(f"{record['n_checks']} module checks passed in {record['seconds']:.2f}s (vit_sincos_demo: {demo}); "
          f"wrote {args.out_dir / JSON_NAME}, {args.out_dir / FIGURE_NAME}")
    return 0
