# The writeup: report/writeup.typ compiled with every result (attnlab.report).
#
# Inputs are the result files the writeup reads (attnlab.report.inputs lists
# them, for the config's vit/gpt runs); params carry digests of the Typst
# sources and the report code: editing report/writeup.typ reruns this rule
# alone. params.config is the whole merged config, which the appendix prints,
# so any config change reruns it too.

from attnlab.report.inputs import required_files, result_paths  # noqa: E402  (stdlib only; src/ is on sys.path)
from attnlab.report.code import source_digest  # noqa: E402  (stdlib only)


rule report:
    input:
        results=required_files(result_paths(config)),
    output:
        pdf=report(
            "results/report/writeup.pdf",
            caption="../../report/writeup.rst",
            category="Writeup",
        ),
    params:
        config=config,
        typst=typst_digest(),
        # The code appendix prints these files whole, comments and docstrings included: any edit of them,
        # not only of their code, must rebuild the PDF, so this digest is of their full text.
        listed=source_digest(SRC),
        code=code("attnlab.report", "attnlab.report.cli", "attnlab.report.build"),
    log:
        "results/logs/report.log",
    benchmark:
        "results/benchmarks/report/report.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=15,
    conda:
        "../../envs/report.yaml"
    script:
        "../scripts/report.py"
