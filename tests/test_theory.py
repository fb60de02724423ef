"""rnn_vs_attention stage: the models against literal/closed-form references, the flop counts
against hand tallies and torch's flop counter, the slopes, the contribution law, the outputs."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from attnlab.config import ConfigError
from attnlab.theory import main, models, run
from attnlab.theory.rnn_vs_attention import DEFAULT_CONFIG, fit_slope

TINY = {"seq_lens": [16, 32, 64], "d": 8, "d_hidden": 6, "repeats": 1, "contribution_lens": [1, 5, 10, 40],
        "radii": [0.9, 1.0, 1.1]}


def _weights(d: int, dh: int, seed: int = 0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=dtype) / math.sqrt(s[-1])  # noqa: E731
    return {"W_h": r(dh, dh), "W_x": r(dh, d), "W_y": r(d, dh), "Q": r(d, d), "K": r(d, d), "V": r(d, d)}


def seed_attention_literal(x, Q, K, V):
    """Eq. 3-4 term by term with Python sums, one t at a time."""
    T = x.shape[0]
    alpha = [sum(float((Q @ x[t]) @ (K @ x[j])) for j in range(T)) / math.sqrt(T) for t in range(T)]
    z = sum(math.exp(a) for a in alpha)
    y_t = sum(math.exp(alpha[j]) * (V @ x[j]) for j in range(T)) / z
    return y_t.expand(T, -1)  # eq. 4 has no t on its right-hand side


@pytest.mark.parametrize("chunk_elements", [models.CHUNK_ELEMENTS, 20])  # 20: chunks of 1-2 rows, a ragged end
def test_naive_equals_rearranged_equals_literal(monkeypatch, chunk_elements):
    monkeypatch.setattr(models, "CHUNK_ELEMENTS", chunk_elements)
    w = _weights(4, 3)
    x = torch.randn(7, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ref = seed_attention_literal(x, w["Q"], w["K"], w["V"])
    naive = models.attention_naive(x, w["Q"], w["K"], w["V"])
    rearranged = models.attention_rearranged(x, w["Q"], w["K"], w["V"])
    torch.testing.assert_close(naive, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(rearranged, ref, rtol=1e-12, atol=1e-12)


def test_naive_equals_rearranged_in_float32_at_a_long_T():
    w = _weights(16, 8, dtype=torch.float32)
    x = torch.randn(2048, 16, generator=torch.Generator().manual_seed(2))
    a = models.attention_naive(x, w["Q"], w["K"], w["V"])
    b = models.attention_rearranged(x, w["Q"], w["K"], w["V"])
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_standard_attention_matches_torch_sdpa(monkeypatch):
    monkeypatch.setattr(models, "CHUNK_ELEMENTS", 50)
    w = _weights(8, 4)
    x = torch.randn(13, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    q, k, v = x @ w["Q"].T, x @ w["K"].T, x @ w["V"].T
    ref = torch.nn.functional.scaled_dot_product_attention(q[None], k[None], v[None])[0]
    torch.testing.assert_close(models.attention_standard(x, w["Q"], w["K"], w["V"]), ref)


def test_rnn_matches_the_closed_form_of_problem_1c():
    # y_T = W_y sum_{k=1}^{T} W_h^{T-k} W_x x_k
    w = _weights(5, 4)
    x = torch.randn(6, 5, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    y = models.rnn_forward(x, w["W_h"], w["W_x"], w["W_y"])
    for T in range(1, 7):
        h_T = sum(torch.linalg.matrix_power(w["W_h"], T - k) @ w["W_x"] @ x[k - 1] for k in range(1, T + 1))
        torch.testing.assert_close(y[T - 1], w["W_y"] @ h_T)


def test_flop_counts_match_a_hand_tally():
    T, d, dh = 2, 3, 4
    # RNN, per step: W_h h 2*4*4 + W_x x 2*4*3 + W_y h 2*3*4 = 80 in products, + 4 for the add.
    assert models.flops("rnn_loop", T, d, dh) == {"matmul": 2 * 80, "other": 2 * 4, "total": 168}
    # Projections Q, K, V of 2 tokens: 3 * 2 * (2*3*3) = 108.
    # Naive eq. 3, per t: 2 dot products of length 3 (12) + sum of 2 (2) + scale (1); max over alpha: 2.
    # Naive eq. 4, per t: subtract 2 + exp 2 + sum 2, weighted sum of 2 vectors of 3 (12), divide 3.
    assert models.flops("attention_naive", T, d, dh) == {
        "matmul": 108 + 2 * 12 + 2 * 12, "other": 2 * 3 + 2 + 2 * 9, "total": 182}
    # Rearranged: sum_j K x_j (6), q s (12), scale (2), softmax over 2 (10), w V (12).
    assert models.flops("attention_rearranged", T, d, dh) == {"matmul": 108 + 12 + 12, "other": 6 + 2 + 10,
                                                              "total": 150}
    # Standard: q k^T (24), scale (4), softmax over 2x2 (20), A v (24).
    assert models.flops("attention_standard", T, d, dh) == {"matmul": 108 + 24 + 24, "other": 4 + 20,
                                                            "total": 180}
    with pytest.raises(ValueError, match="unknown method"):
        models.flops("lstm", T, d, dh)


@pytest.mark.parametrize("T", [5, 24])
def test_matmul_flops_match_torch_flop_counter(monkeypatch, T):
    monkeypatch.setattr(models, "CHUNK_ELEMENTS", 64)  # several chunks: chunking must not change the work
    d, dh = 6, 5
    w = _weights(d, dh)
    x = torch.randn(T, d, dtype=torch.float64)
    calls = {
        "rnn_loop": lambda: models.rnn_forward(x, w["W_h"], w["W_x"], w["W_y"]),
        "attention_naive": lambda: models.attention_naive(x, w["Q"], w["K"], w["V"]),
        "attention_rearranged": lambda: models.attention_rearranged(x, w["Q"], w["K"], w["V"]),
        "attention_standard": lambda: models.attention_standard(x, w["Q"], w["K"], w["V"]),
    }
    for method, call in calls.items():
        with FlopCounterMode(display=False) as counter:
            call()
        assert counter.get_total_flops() == models.flops(method, T, d, dh)["matmul"], method


def test_repeated_median_slope_ignores_one_stray_point():
    from attnlab.theory.rnn_vs_attention import flag_outliers, repeated_median_slope

    # the RNN shape: linear up to 4096, then a point barely above the one before it
    T = [1024, 2048, 4096, 8192]
    secs = [0.0156, 0.0312, 0.0624, 0.0679]
    assert fit_slope(T, secs) < 0.85  # least squares is pulled down by the last point
    slope, icpt = repeated_median_slope(T, secs)
    assert slope == pytest.approx(1.0, abs=1e-9)  # pairwise slopes among the first three are all exactly 1
    assert icpt == pytest.approx(math.log(0.0156 / 1024))
    assert flag_outliers(T, secs, slope, icpt) == [8192]  # 0.0679 against 0.1248 on the line: 1.84x off
    # the numbers the other way: a clean quadratic has no outlier and slope 2
    sq = [1e-9 * t**2 for t in T]
    slope, icpt = repeated_median_slope(T, sq)
    assert slope == pytest.approx(2.0) and flag_outliers(T, sq, slope, icpt) == []
    with pytest.raises(ValueError):
        repeated_median_slope([4], [1.0])


def test_cuda_is_timed_when_asked_and_present(tmp_path, monkeypatch):
    """gpu: off never touches CUDA; gpu: auto times it only where torch sees one."""
    seen = []
    from attnlab.theory import rnn_vs_attention as rva

    real = rva.measure_scaling
    monkeypatch.setattr(rva, "measure_scaling", lambda cfg, device="cpu": seen.append(str(device)) or real(cfg, "cpu"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    run({**TINY, "gpu": "off"}, tmp_path / "off")
    assert seen == ["cpu"]
    seen.clear()
    record = run({**TINY, "gpu": "auto"}, tmp_path / "auto")
    assert seen == ["cpu", "cuda"] and record["scaling_gpu"] is not None
    seen.clear()
    run({**TINY, "gpu": False}, tmp_path / "yaml-off")  # `gpu: off` as YAML reads it
    assert seen == ["cpu"]
    with pytest.raises(ConfigError, match="theory.gpu"):
        run({**TINY, "gpu": "yes"}, tmp_path / "bad")
    # a failing GPU measurement is recorded; the CPU results stand

    def gpu_fails(cfg, device="cpu"):
        if str(device) == "cuda":
            raise RuntimeError("CUDA out of memory. Tried to allocate 2 GiB\nmore detail")
        return real(cfg, "cpu")

    monkeypatch.setattr(rva, "measure_scaling", gpu_fails)
    record = run({**TINY, "gpu": "auto"}, tmp_path / "fails")
    assert record["scaling_gpu"] is None
    assert record["scaling_gpu_error"] == "CUDA out of memory. Tried to allocate 2 GiB"
    assert json.loads((tmp_path / "fails" / "rnn_vs_attention.json").read_text())["scaling"]["device"] == "cpu"


def test_fitted_flop_slopes():
    lens = DEFAULT_CONFIG["seq_lens"][4:]  # the half the stage fits on
    d, dh = DEFAULT_CONFIG["d"], DEFAULT_CONFIG["d_hidden"]
    slope = {m: fit_slope(lens, [models.flops(m, T, d, dh)["total"] for T in lens]) for m in models.METHODS}
    assert slope["rnn_loop"] == pytest.approx(1.0, abs=1e-9)
    assert slope["attention_rearranged"] == pytest.approx(1.0, abs=1e-9)
    assert 1.9 < slope["attention_naive"] < 2.0
    assert 1.9 < slope["attention_standard"] < 2.0
    assert fit_slope([2, 4, 8, 16], [3 * t**2.5 for t in (2, 4, 8, 16)]) == pytest.approx(2.5)


def test_contribution_follows_rho_to_the_T_minus_1():
    g = torch.Generator().manual_seed(5)
    O = models.random_orthogonal(6, g)
    assert torch.allclose(O.T @ O, torch.eye(6, dtype=torch.float64), atol=1e-12)
    W_x = torch.randn(6, 4, generator=g, dtype=torch.float64)
    W_y_orth = models.random_orthogonal(6, g)  # norm-preserving, so the y-norm law is exact
    W_y = torch.randn(3, 6, generator=g, dtype=torch.float64)
    x1 = torch.randn(4, generator=g, dtype=torch.float64)
    lens = [1, 2, 7, 30, 100]
    for rho in (0.9, 1.0, 1.1):
        norms, h_norms = models.contribution_norms(rho * O, W_x, W_y_orth, x1, lens)
        base = torch.linalg.vector_norm(W_y_orth @ W_x @ x1).item()
        assert norms == pytest.approx([rho ** (T - 1) * base for T in lens], rel=1e-10)
        assert h_norms == pytest.approx([rho ** (T - 1) * torch.linalg.vector_norm(W_x @ x1).item() for T in lens],
                                        rel=1e-10)
        # A general W_y: compare with W_y W_h^(T-1) W_x x_1 computed by matrix powers.
        norms, _ = models.contribution_norms(rho * O, W_x, W_y, x1, lens)
        expected = [torch.linalg.vector_norm(W_y @ torch.linalg.matrix_power(rho * O, T - 1) @ W_x @ x1).item()
                    for T in lens]
        assert norms == pytest.approx(expected, rel=1e-10)


def test_run_writes_the_outputs(tmp_path):
    record = run(TINY, tmp_path)
    data = json.loads((tmp_path / "rnn_vs_attention.json").read_text())
    s = data["scaling"]
    assert s["seq_lens"] == [16, 32, 64] and set(s["methods"]) == set(models.METHODS)
    for m in s["methods"].values():
        assert len(m["seconds"]) == 3 and all(t > 0 for t in m["seconds"])
        assert isinstance(m["slope_seconds"], float) and isinstance(m["slope_flops"], float)
    assert s["methods"]["attention_rearranged"]["slope_flops"] == pytest.approx(1.0)
    assert s["naive_equals_rearranged"]["passed"] is True
    c = data["contribution"]
    assert c["lens"] == [1, 5, 10, 40] and set(c["norms"]) == {"0.9", "1.0", "1.1"}
    assert c["fitted_rate"]["0.9"] == pytest.approx(0.9, rel=0.02)
    assert c["h_norms"]["1.1"][-1] == pytest.approx(1.1**39 * c["h_closed_form_base"], rel=1e-9)
    assert record["config"]["d"] == 8
    with open(tmp_path / "scaling.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3 * len(models.METHODS)
    assert int(rows[0]["flops"]) == models.flops(rows[0]["method"], int(rows[0]["seq_len"]), 8, 6)["total"]
    for svg in ("scaling.svg", "contribution.svg"):
        assert b"<svg" in (tmp_path / svg).read_bytes()[:2000]
    # medians of the recorded repeats, and where they ran
    for m in s["methods"].values():
        for runs, med in zip(m["seconds_runs"], m["seconds"]):
            assert len(runs) == 1 and med == runs[0]
    # one torch thread for the CPU timings, whatever the process had, and the process's setting left alone
    assert s["device"] == "cpu" and s["torch_threads"] == 1 and data["torch_threads"] == torch.get_num_threads()
    assert set(s["load_average"]) == {"before", "after"}
    for m in s["methods"].values():  # the spread is the repeats' own max/min
        assert m["seconds_max"] == [max(r) for r in m["seconds_runs"]]
        assert m["time_order"] in {"linear", "quadratic", "undecided"}
    assert [(c["a"], c["b"]) for c in s["comparisons"]] == [
        ("rnn_loop", "attention_rearranged"), ("rnn_loop", "attention_standard"), ("rnn_loop", "attention_naive")]
    assert (data["scaling_gpu"] is not None) == torch.cuda.is_available()


def test_a_wrong_rearrangement_stops_the_stage(tmp_path, monkeypatch):
    right = models.attention_rearranged

    def halved_scores(x, Q, K, V):  # alpha/2 inside the softmax: a plausible slip
        return right(x, Q / 2, K, V)

    monkeypatch.setattr(models, "attention_rearranged", halved_scores)
    with pytest.raises(RuntimeError, match="disagree"):
        run(TINY, tmp_path / "out")
    assert not (tmp_path / "out" / "rnn_vs_attention.json").exists()


def test_bad_config(tmp_path, capsys):
    with pytest.raises(ConfigError, match="theory.seq_len"):
        run({"seq_len": [8, 16]}, tmp_path)
    with pytest.raises(ConfigError, match="theory.radii"):
        run({**TINY, "radii": "0.9"}, tmp_path)
    with pytest.raises(ConfigError, match="theory.seq_lens"):
        run({**TINY, "seq_lens": [64]}, tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("repeatz: 3\n")
    assert main(["--config", str(bad), "--out-dir", str(tmp_path / "o")]) == 2
    assert "theory.repeatz" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_figures_are_reproducible_svg(tmp_path):
    """Same numbers, same SVG bytes (fixed hash salt, no date), so the report built on them stays reproducible."""
    from attnlab.theory import plots

    c = {"lens": [1, 5, 10], "norms": {"0.9": [1.0, 0.6, 0.4], "1.0": [1.0, 1.1, 0.9]},
         "fitted_rate": {"0.9": 0.9, "1.0": None}, "h_closed_form_base": 1.0}
    plots.plot_contribution(c, tmp_path / "a.svg")
    plots.plot_contribution(c, tmp_path / "b.svg")
    a = (tmp_path / "a.svg").read_bytes()
    assert a == (tmp_path / "b.svg").read_bytes()
    assert b"<svg" in a[:2000] and b"<dc:date>" not in a
    c["norms"]["0.9"][-1] = 0.5  # the numbers change: so do the bytes
    plots.plot_contribution(c, tmp_path / "c.svg")
    assert (tmp_path / "c.svg").read_bytes() != a


def test_t_quantiles_match_the_t_density():
    """The table's 97.5% points against a numerical integration of Student's t density (trapezoid, numpy)."""
    import numpy as np

    from attnlab.theory.rnn_vs_attention import t975

    for dof in (1, 2, 3, 5, 10, 29, 30, 31, 60):
        x = np.linspace(0.0, t975(dof), 200001)
        dens = math.gamma((dof + 1) / 2) / (math.sqrt(dof * math.pi) * math.gamma(dof / 2)) \
            * (1 + x ** 2 / dof) ** (-(dof + 1) / 2)
        mass = float(np.sum((dens[1:] + dens[:-1]) / 2 * np.diff(x)))  # P(0 < t < q)
        assert mass == pytest.approx(0.475, abs=3e-4), dof
    with pytest.raises(ValueError):
        t975(0)


def test_slope_fit_interval_and_r2_by_hand():
    from attnlab.theory.rnn_vs_attention import order_verdict, slope_fit

    # log2 T = 0, 1, 2, 3 and log y = slope * log T + residuals (+e, -e, -e, +e), e = 0.01:
    # the residuals are orthogonal to 1 and log T, so least squares returns the slope exactly.
    T = [1, 2, 4, 8]
    e = 0.01
    for slope in (1.0, 2.0):
        y = [math.exp(slope * math.log(t) + r) for t, r in zip(T, (e, -e, -e, e))]
        fit = slope_fit(T, y)
        assert fit["slope"] == pytest.approx(slope)
        # SSE = 4e^2, Sxx = (ln 2)^2 * 5, se = sqrt(SSE / 2 / Sxx), half = 4.303 * se
        half = 4.303 * math.sqrt(4 * e**2 / 2 / (5 * math.log(2) ** 2))
        assert fit["ci95"] == pytest.approx([slope - half, slope + half])
        sst = sum((slope * math.log(t) + r - (slope * 1.5 * math.log(2))) ** 2 for t, r in zip(T, (e, -e, -e, e)))
        assert fit["r2"] == pytest.approx(1 - 4 * e**2 / sst)
    assert order_verdict(slope_fit(T, [t * math.exp(r) for t, r in zip(T, (e, -e, -e, e))])) == "linear"
    assert order_verdict(slope_fit(T, [t**2 * math.exp(r) for t, r in zip(T, (e, -e, -e, e))])) == "quadratic"
    # noisy timings: a slope of 1.24 with residuals of 0.3 cannot tell O(T) from O(T^2)
    noisy = slope_fit(T, [t**1.24 * math.exp(r) for t, r in zip(T, (0.3, -0.3, -0.3, 0.3))])
    assert noisy["ci95"][0] < 1.5 < noisy["ci95"][1] and order_verdict(noisy) == "undecided"
    assert slope_fit([1, 2], [1.0, 2.0])["ci95"] is None and order_verdict({"ci95": None}) == "undecided"


def test_separation_claims_only_where_the_timed_runs_do_not_overlap():
    from attnlab.theory.rnn_vs_attention import from_on, separation

    a = [[1.0, 1.2], [2.0, 2.4], [4.0, 4.1], [8.0, 8.5]]
    b = [[0.5, 0.9], [2.3, 2.6], [4.2, 5.0], [9.0, 9.9]]  # faster, overlapping (a tie), slower, slower
    signs = separation(a, b)
    assert signs == [-1, 0, 1, 1]
    lens = [1, 2, 4, 8]
    assert from_on(signs, lens, 1) == 4 and from_on(signs, lens, -1) is None
    assert from_on([1, 1, 1], [1, 2, 3], 1) == 1 and from_on([1, 0, 1, 0], lens, 1) is None
