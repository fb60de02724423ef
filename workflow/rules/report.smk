# The writeup: report/writeup.typ compiled with every result (attnlab.report).
#
# Inputs are the result files the writeup reads (attnlab.report.inputs lists
# them, for the config's vit/gpt runs), the Typst sources and the report code:
# editing report/writeup.typ reruns this rule alone. params.config is the whole
# merged config, which the appendix prints, so any config change reruns it too.

sys.path.insert(0, str(SRC))  # the checkout's attnlab, also when planning outside its env
from attnlab.report.inputs import required_files, result_paths  # noqa: E402  (stdlib only)
from attnlab.report.code import source_files as listed_sources  # noqa: E402  (stdlib only)

REPORT_SOURCES = sorted(str(p) for p in (ROOT / "report").glob("*.typ"))


rule report:
    input:
        results=required_files(result_paths(config)),
        writeup=str(ROOT / "report" / "writeup.typ"),
        typst=REPORT_SOURCES,
        code=pkg_sources("attnlab.report", "attnlab.report.cli", "attnlab.report.build"),
        # the code appendix prints these files: an edit of a listed class rebuilds the PDF
        listed=listed_sources(SRC),
    output:
        pdf=report(
            "results/report/writeup.pdf",
            caption="../../report/writeup.rst",
            category="Writeup",
        ),
    params:
        config=config,
        repo=str(ROOT),
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
