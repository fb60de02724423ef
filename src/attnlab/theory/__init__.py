"""rnn_vs_attention stage (homework Problem 1 measurements).

    python -m attnlab.theory --config SECTION.yaml --out-dir DIR

``SECTION.yaml`` is the ``theory`` section of config/config.yaml (optional:
the defaults below apply). The work is in attnlab.theory.rnn_vs_attention.run.
"""

from __future__ import annotations

from pathlib import Path

from attnlab.config import load_config_file
from attnlab.cli import stage_parser
from attnlab.errors import cli_main
from attnlab.theory.rnn_vs_attention import DEFAULT_CONFIG, run

__all__ = ["DEFAULT_CONFIG", "run", "main"]


@cli_main
def main(argv: list[str] | None = None) -> int:
    parser = stage_parser("attnlab.theory", "Time and count flops of the homework's RNN and self-attention against "
                          "T, and measure how x_1's contribution to y_T scales with the spectral radius of W_h. "
                          "Writes rnn_vs_attention.json, scaling.csv, scaling.svg and contribution.svg. "
                          f"Config keys (theory section): {', '.join(DEFAULT_CONFIG)}.")
    parser.add_argument("--config", type=Path, help="YAML/JSON file holding the theory section (optional)")
    parser.add_argument("--out-dir", required=True, type=Path, help="folder for the outputs")
    args = parser.parse_args(argv)
    record = run(load_config_file(args.config), args.out_dir)
    for name, m in record["scaling"]["methods"].items():
        print(f"{name:22s} slope seconds {m['slope_seconds']:.2f}  slope flops {m['slope_flops']:.2f}")
    print(f"done in {record['seconds']:.1f}s; wrote {args.out_dir}")
    return 0
