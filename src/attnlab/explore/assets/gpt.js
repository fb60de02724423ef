// GPT page: BertViz-style head view, the attention matrix with its causal mask, and a layer x head overview.
(function () {
  const D = DATA, L = D.layers, H = D.heads;
  const SVG_NS = $("heads").namespaceURI;  // the SVG namespace, taken from the page itself
  const seqs = D.sequences.map(s => ({...s, T: s.tokens.length, row: Rows(s.attention, s.tokens.length)}));
  // head -1 = the mean over heads; query null = every query (nothing hovered or kept)
  const state = {seq: 0, layer: 0, head: -1, query: null, locked: false, perRow: true};

  // Row of query q over all T keys in layer l, head h (or the mean of the heads).
  function rowOf(s, l, h, q) {
    if (h >= 0) return s.row((l * H + h) * s.T + q);
    return meanRows(range(H).map(k => s.row((l * H + k) * s.T + q)));
  }
  function matrixOf(s, l, h) { return range(s.T).map(q => rowOf(s, l, h, q)); }

  const ROW = 18, LEFT = 150, RIGHT = 330, WIDTH = 480;

  function svg(tag, attrs, text) {
    const el = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
    if (text !== undefined) el.textContent = text;
    return el;
  }

  // Token columns are built once per sequence (so hovering never replaces the element under the pointer);
  // drawHeads then redraws the lines and marks the query and the masked keys.
  function buildHeads() {
    const s = seqs[state.seq], root = $("heads");
    root.setAttribute("width", WIDTH); root.setAttribute("height", ROW * s.T + 10);
    const left = s.tokens.map((t, i) => {
      const el = svg("text", {x: LEFT, y: ROW * i + 18, "text-anchor": "end", class: "tok", "data-i": i}, t);
      el.addEventListener("mouseenter", () => { if (!state.locked) { state.query = i; drawHeads(); drawMatrix(); } });
      el.addEventListener("mouseleave", () => { if (!state.locked) { state.query = null; drawHeads(); drawMatrix(); } });
      el.addEventListener("click", () => {
        const same = state.locked && state.query === i;
        state.locked = !same; state.query = same ? null : i;
        drawHeads(); drawMatrix();
      });
      return el;
    });
    const right = s.tokens.map((t, k) => {
      const el = svg("text", {x: RIGHT, y: ROW * k + 18, class: "tok", "data-k": k}, t);
      el.append(svg("title", {}, t));
      return el;
    });
    root.replaceChildren(svg("g", {id: "lines"}), svg("g", {id: "queries"}), svg("g", {id: "keys"}));
    root.querySelector("#queries").append(...left);
    root.querySelector("#keys").append(...right);
  }

  function drawHeads() {
    const s = seqs[state.seq], M = matrixOf(s, state.layer, state.head), q0 = state.query;
    const queries = q0 === null ? range(s.T) : [q0];
    // With one query its strongest weight is drawn fully opaque; with all, each line's weight is its opacity.
    const norm = q0 === null ? 1 : Math.max(...M[q0]);
    const lines = [];
    for (const q of queries) for (let k = 0; k <= q; k++) {  // k > q: masked, weight 0, no line
      lines.push(svg("line", {x1: LEFT + 6, y1: ROW * q + 14, x2: RIGHT - 6, y2: ROW * k + 14,
        stroke: "#1f77b4", "stroke-width": 2, "stroke-opacity": Math.min(1, M[q][k] / norm),
        "data-q": q, "data-k": k, "data-w": M[q][k]}));
    }
    $("heads").querySelector("#lines").replaceChildren(...lines);
    for (const el of $("heads").querySelector("#queries").children) el.classList.toggle("query", Number(el.dataset.i) === q0);
    for (const el of $("heads").querySelector("#keys").children) {
      const k = Number(el.dataset.k), masked = q0 !== null && k > q0;
      el.classList.toggle("masked", masked);
      el.firstElementChild.textContent = masked ? "masked: a later token" :
        q0 === null ? s.tokens[k] : `weight ${M[q0][k].toFixed(4)}`;
    }
  }

  // Masked cells get a grey hatch, so "not allowed" never reads as "weight 0".
  function hatch(ctx) {
    const p = document.createElement("canvas"); p.width = p.height = 6;
    const c = p.getContext("2d"); c.fillStyle = "#eee"; c.fillRect(0, 0, 6, 6);
    c.strokeStyle = "#aaa"; c.beginPath(); c.moveTo(0, 6); c.lineTo(6, 0); c.stroke();
    return ctx.createPattern(p, "repeat");
  }

  // The first query can only attend to itself (weight 1), which would flatten one shared colour scale:
  // by default each row is scaled to its own largest weight instead.
  function paintMatrix(canvas, M, size, outlineRow) {
    const ctx = canvas.getContext("2d"), T = M.length, cell = size / T;
    canvas.width = canvas.height = size;
    const vmax = Math.max(...M.flatMap(r => Array.from(r)));
    const pattern = hatch(ctx);
    for (let q = 0; q < T; q++) {
      const top = state.perRow ? Math.max(...M[q]) : vmax;
      for (let k = 0; k < T; k++) {
        ctx.fillStyle = k > q ? pattern : viridis(M[q][k] / top);
        ctx.fillRect(k * cell, q * cell, Math.ceil(cell), Math.ceil(cell));
      }
    }
    if (outlineRow !== null) {
      ctx.strokeStyle = "#d62728"; ctx.lineWidth = 2;
      ctx.strokeRect(1, outlineRow * cell + 1, size - 2, Math.max(cell - 2, 1));
    }
    return vmax;
  }

  function drawMatrix() {
    const s = seqs[state.seq];
    const vmax = paintMatrix($("matrix"), matrixOf(s, state.layer, state.head), 400, state.query);
    if (state.perRow) drawColorbar($("colorbar"), 1, "weight / its row's largest weight");
    else drawColorbar($("colorbar"), vmax, "attention weight");
    const head = state.head < 0 ? "mean of heads" : `head ${state.head + 1}`;
    const q = state.query === null ? "" : `; query ${state.query + 1}: "${s.tokens[state.query]}"`;
    $("selected").textContent = `layer ${state.layer + 1}, ${head}${q}`;
  }

  function drawOverview() {
    const s = seqs[state.seq], grid = $("overview");
    grid.style.gridTemplateColumns = `repeat(${H + 1}, 76px)`;
    const cells = [];
    for (let l = 0; l < L; l++) for (let h = -1; h < H; h++) {
      const div = document.createElement("div"), c = document.createElement("canvas");
      paintMatrix(c, matrixOf(s, l, h), 72, null);
      div.append(c, document.createElement("br"), `L${l + 1} ${h < 0 ? "mean" : "H" + (h + 1)}`);
      div.dataset.layer = l; div.dataset.head = h;
      div.classList.toggle("selected", l === state.layer && h === state.head);
      div.addEventListener("click", () => { select({layer: l, head: h}); });
      cells.push(div);
    }
    grid.replaceChildren(...cells);
  }

  function select(change) {
    Object.assign(state, change);
    $("seq").value = state.seq; $("layer").value = state.layer; $("head").value = state.head;
    drawHeads(); drawMatrix();
    for (const div of $("overview").children) {
      div.classList.toggle("selected", Number(div.dataset.layer) === state.layer && Number(div.dataset.head) === state.head);
    }
  }

  fillSelect($("seq"), seqs.map((s, i) => [i, `${s.label} (${s.T} tokens)`]));
  fillSelect($("layer"), range(L).map(l => [l, `layer ${l + 1}`]));
  fillSelect($("head"), [[-1, "mean of heads"], ...range(H).map(h => [h, `head ${h + 1}`])]);
  $("seq").addEventListener("change", e => {
    Object.assign(state, {seq: Number(e.target.value), query: null, locked: false});
    buildHeads(); select({}); drawOverview();
  });
  $("layer").addEventListener("change", e => select({layer: Number(e.target.value)}));
  $("perrow").addEventListener("change", e => { state.perRow = e.target.checked; drawMatrix(); drawOverview(); });
  $("head").addEventListener("change", e => select({head: Number(e.target.value)}));
  $("about").textContent = `run ${D.run}, epoch ${D.epoch}; ${seqs.length} sequences of at most ${D.max_tokens} tokens, ` +
    `${L} layers x ${H} heads. Weights are stored as 8 bits per value scaled by each row's maximum: each is within ` +
    `1/510 of its row's largest weight of the model's.`;

  // For tests and the console: the state, the rows, and the lines drawn now.
  window.explorer = {state, rowOf: (l, h, q) => rowOf(seqs[state.seq], l, h, q), select,
    lines: () => [...$("heads").querySelectorAll("line")].map(e => [Number(e.dataset.q), Number(e.dataset.k), Number(e.dataset.w)])};
  buildHeads();
  select({});
  drawOverview();
})();
