"""The starter code's Problem 1 models, written to be timed, and their analytic flop counts.

Conventions: vectors are rows, so the starter code's ``W x_t`` is ``x[t] @ W.T``;
inputs are x (T, d). Weights are (out, in) like nn.Linear's.

* RNN (eq. 1-2, phi_h = phi_y = identity, zero biases): a Python loop over t,
  one step at a time, as the recurrence forces.
* The starter code's self-attention (eq. 3-4) exactly as written. Note that
  alpha_t = (1/sqrt(T)) sum_j (Q x_t)^T (K x_j) is one scalar per t and
  y_t = sum_j e^{alpha_j} V x_j / sum_j e^{alpha_j} does not depend on t.
  ``attention_naive`` evaluates the formulas literally (O(T^2 d), in chunks of
  queries as matrix products); ``attention_rearranged`` uses
  sum_j (Q x_t)^T (K x_j) = (Q x_t)^T (sum_j K x_j): O(T d) after the projections.
* Standard softmax(Q K^T / sqrt(d)) V attention, for comparison, O(T^2 d).
The flop convention is in :func:`flops`.
"""

from __future__ import annotations

import math

import torch

Tensor = torch.Tensor

# Queries per chunk are chosen so a (chunk, T) block has about this many elements (16 MiB in float32).
CHUNK_ELEMENTS = 1 << 22

METHODS = ("rnn_loop", "attention_naive", "attention_rearranged", "attention_standard")
LABELS = {
    "rnn_loop": "RNN, step by step (eq. 1-2)",
    "attention_naive": "attention of eq. 3-4, naive",
    "attention_rearranged": "attention of eq. 3-4, rearranged",
    "attention_standard": "standard softmax attention",
}
COMPLEXITY = {
    "rnn_loop": "O(T (d_hidden^2 + d d_hidden)), sequential in T",
    "attention_naive": "O(T d^2 + T^2 d)",
    "attention_rearranged": "O(T d^2)",
    "attention_standard": "O(T d^2 + T^2 d)",
}


def _chunk(T: int) -> int:
    return max(1, min(T, CHUNK_ELEMENTS // T))


def rnn_forward(x: Tensor, W_h: Tensor, W_x: Tensor, W_y: Tensor) -> Tensor:
    """h_t = W_h h_{t-1} + W_x x_t, y_t = W_y h_t, h_0 = 0; x (T, d_in) -> y (T, d_out)."""
    T = x.shape[0]
    Wh_T, Wx_T, Wy_T = W_h.T.contiguous(), W_x.T.contiguous(), W_y.T.contiguous()
    h = x.new_zeros(1, W_h.shape[0])  # (1, d_hidden)
    y = x.new_empty(T, W_y.shape[0])
    for t in range(T):
        h = h @ Wh_T + x[t : t + 1] @ Wx_T
        y[t : t + 1] = h @ Wy_T
    return y


def attention_naive(x: Tensor, Q: Tensor, K: Tensor, V: Tensor) -> Tensor:
    """Eq. 3-4 literally: every alpha_t and every y_t recomputes its sum over j. x (T, d) -> y (T, d_v)."""
    T = x.shape[0]
    q, k, v = x @ Q.T, x @ K.T, x @ V.T  # (T, d_k), (T, d_k), (T, d_v)
    c = _chunk(T)
    alpha = x.new_empty(T)
    for s in range(0, T, c):
        # (c, T) dot products (Q x_t)^T (K x_j), summed over j: eq. 3 for c values of t.
        alpha[s : s + c] = (q[s : s + c] @ k.T).sum(-1) / math.sqrt(T)
    m = alpha.max()  # subtracted inside the exponentials for range only; it cancels in eq. 4
    y = x.new_empty(T, v.shape[1])
    for s in range(0, T, c):
        n = min(c, T - s)
        e = torch.exp(alpha.expand(n, T) - m)  # (n, T): e^{alpha_j} recomputed for each of the n values of t
        y[s : s + n] = (e @ v) / e.sum(-1, keepdim=True)
    return y


def attention_rearranged(x: Tensor, Q: Tensor, K: Tensor, V: Tensor) -> Tensor:
    """Eq. 3-4 with the sums hoisted: sum_j K x_j once, the softmax weights once, y once."""
    T = x.shape[0]
    q, k, v = x @ Q.T, x @ K.T, x @ V.T
    s = k.sum(0, keepdim=True).T  # (d_k, 1) = sum_j K x_j
    alpha = (q @ s).squeeze(1) / math.sqrt(T)  # (T,)
    w = torch.softmax(alpha, dim=0)  # e^{alpha_j} / sum_j e^{alpha_j}
    y = w[None] @ v  # (1, d_v): the same for every t
    return y.expand(T, -1)


def attention_standard(x: Tensor, Q: Tensor, K: Tensor, V: Tensor) -> Tensor:
    """softmax(q k^T / sqrt(d_k)) v, in chunks of queries to bound memory."""
    T = x.shape[0]
    q, k, v = x @ Q.T, x @ K.T, x @ V.T
    c = _chunk(T)
    y = x.new_empty(T, v.shape[1])
    for s in range(0, T, c):
        scores = q[s : s + c] @ k.T / math.sqrt(q.shape[1])  # (c, T)
        y[s : s + c] = torch.softmax(scores, dim=-1) @ v
    return y


def flops(method: str, T: int, d: int, d_hidden: int) -> dict[str, int]:
    """Analytic floating-point operations of one forward pass, split into matrix products and the rest.

    d is d_in = d_k = d_v = d_out; d_hidden is the RNN's hidden size. A
    multiply-add is 2 flops (an (m, n) @ (n, p) product is 2mnp); a reduction
    over n numbers is n flops; each elementwise add/subtract/multiply/divide/
    exp/max is 1 flop per element. The counts follow the code line by line, and
    their matrix-product part is what torch.utils.flop_counter counts for the
    same code (tested).
    """
    proj = 3 * 2 * T * d * d  # Q x_t, K x_t, V x_t for every t
    if method == "rnn_loop":
        per_step_mm = 2 * d_hidden * d_hidden + 2 * d * d_hidden + 2 * d_hidden * d  # W_h h, W_x x_t, W_y h
        matmul, other = T * per_step_mm, T * d_hidden  # the add in eq. 1
    elif method == "attention_naive":
        # eq. 3 per t: T dot products (2dT), their sum (T), the 1/sqrt(T) scale (1); then the max (T).
        # eq. 4 per t: subtract max + exp + sum over T (3T), weighted sum (2Td), divide (d).
        matmul = proj + T * (2 * d * T) + T * (2 * T * d)
        other = T * (T + 1) + T + T * (3 * T + d)
    elif method == "attention_rearranged":
        # sum_j K x_j (Td); alpha = q s (2Td) and scale (T); softmax over T (max, sub, exp, sum, div: 5T);
        # y = w V (2Td).
        matmul = proj + 2 * T * d + 2 * T * d
        other = T * d + T + 5 * T
    elif method == "attention_standard":
        # q k^T (2T^2 d), scale (T^2), softmax rows (5T^2), A v (2T^2 d).
        matmul = proj + 2 * T * T * d + 2 * T * T * d
        other = T * T + 5 * T * T
    else:
        raise ValueError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
    return {"matmul": matmul, "other": other, "total": matmul + other}


def random_orthogonal(n: int, generator: torch.Generator, dtype=torch.float64) -> Tensor:
    """A Haar-random orthogonal matrix (QR of a Gaussian with the signs fixed): every |eigenvalue| is 1."""
    a = torch.randn(n, n, generator=generator, dtype=dtype)
    q, r = torch.linalg.qr(a)
    return q * torch.sign(torch.diagonal(r))


def contribution_norms(W_h: Tensor, W_x: Tensor, W_y: Tensor, x1: Tensor, lens: list[int]) -> tuple[list, list]:
    """||contribution of x_1 to y_T|| and to h_T, for each T in lens, by running the linear RNN.

    With phi_h and phi_y the identity the RNN is linear, so x_1's contribution
    to y_T is y_T for the input (x_1, 0, 0, ...): W_y W_h^{T-1} W_x x_1.
    One pass of max(lens) steps gives every T.
    """
    wanted = set(lens)
    h = W_x @ x1  # h_1
    y_norms, h_norms = {}, {}
    for t in range(1, max(lens) + 1):
        if t > 1:
            h = W_h @ h
        if t in wanted:
            y_norms[t] = torch.linalg.vector_norm(W_y @ h).item()
            h_norms[t] = torch.linalg.vector_norm(h).item()
    return [y_norms[t] for t in lens], [h_norms[t] for t in lens]
