// ViT page: the map of one query token's attention drawn over the upsampled image.
(function () {
  const D = DATA, L = D.layers, H = D.heads, T = D.tokens, [gh, gw] = D.grid, N = gh * gw;
  const [ih, iw] = D.size;
  const attn = Rows(D.attention, T);  // row ((image * L + layer) * H + head) * T + query
  const roll = Rows(D.rollout, T);    // row image * T + query
  // layer / head -1 means "the mean over all of them"
  const state = {image: 0, view: "attention", layer: -1, head: -1, query: 0, opacity: 0.6};

  // Each image once at its own resolution; the main view scales it up with smoothing.
  const sources = D.images.map(img => {
    const c = document.createElement("canvas");
    c.width = iw; c.height = ih;
    const px = b64bytes(img.pixels), im = c.getContext("2d").createImageData(iw, ih);
    for (let i = 0; i < iw * ih; i++) {
      im.data.set(px.subarray(3 * i, 3 * i + 3), 4 * i); im.data[4 * i + 3] = 255;
    }
    c.getContext("2d").putImageData(im, 0, 0);
    return c;
  });

  function argmax(a) { return a.reduce((best, v, i) => (v > a[best] ? i : best), 0); }

  // The query's full row over the 1 + N keys for the current selection.
  function currentRow() {
    const {image, layer, head, query} = state;
    if (state.view === "rollout") return roll(image * T + query);
    const layers = layer < 0 ? range(L) : [layer], heads = head < 0 ? range(H) : [head];
    const rows = [];
    for (const l of layers) for (const h of heads) rows.push(attn(((image * L + l) * H + h) * T + query));
    return meanRows(rows);
  }

  // What the image overlay shows: the row over the N patches, renormalised to sum 1 there.
  function currentMap() {
    const row = currentRow(), patches = row.slice(1);
    const total = patches.reduce((s, v) => s + v, 0);
    return {map: patches.map(v => v / total), cls: row[0] / row.reduce((s, v) => s + v, 0)};
  }

  function draw() {
    const canvas = $("main"), ctx = canvas.getContext("2d"), W = canvas.width, Hc = canvas.height;
    ctx.imageSmoothingEnabled = true;
    ctx.drawImage(sources[state.image], 0, 0, W, Hc);
    const {map, cls} = currentMap(), vmax = Math.max(...map);
    const cw = W / gw, ch = Hc / gh;
    ctx.globalAlpha = state.opacity;
    for (let p = 0; p < N; p++) {
      ctx.fillStyle = viridis(map[p] / vmax);
      ctx.fillRect((p % gw) * cw, Math.floor(p / gw) * ch, cw, ch);
    }
    ctx.globalAlpha = 1;
    if (state.query > 0) {  // outline the query patch
      const p = state.query - 1;
      ctx.strokeStyle = "#d62728"; ctx.lineWidth = 3;
      ctx.strokeRect((p % gw) * cw + 1.5, Math.floor(p / gw) * ch + 1.5, cw - 3, ch - 3);
    }
    drawColorbar($("colorbar"), vmax, "share of the patches' attention");
    const q = state.query === 0 ? "the class token" : `patch ${state.query} (row ${Math.floor((state.query - 1) / gw) + 1}, column ${(state.query - 1) % gw + 1})`;
    $("query").textContent = `${q}; its ${state.view === "rollout" ? "rollout" : "attention"} weight on the class token: ${cls.toFixed(3)}`;
    $("scale").textContent = `colours from 0 to ${vmax.toFixed(4)} (uniform: 1/${N} = ${(1 / N).toFixed(4)})`;
    const isRoll = state.view === "rollout";
    $("layer").disabled = isRoll; $("head").disabled = isRoll;
    drawInfo();
  }

  function drawInfo() {
    const img = D.images[state.image];
    const order = range(img.probs.length).sort((a, b) => img.probs[b] - img.probs[a]).slice(0, 3);
    $("probs").replaceChildren(...order.map(c => {
      const tr = document.createElement("tr");
      const name = document.createElement("td"), bar = document.createElement("td"), p = document.createElement("td");
      name.textContent = D.classes[c] + (D.classes[c] === img.true ? " (true)" : "");
      const b = document.createElement("span"); b.className = "bar"; b.style.width = `${Math.round(120 * img.probs[c])}px`;
      bar.append(b); p.textContent = `${(100 * img.probs[c]).toFixed(1)}%`;
      tr.append(name, bar, p);
      return tr;
    }));
    for (const [i, el] of [...$("thumbs").children].entries()) el.classList.toggle("selected", i === state.image);
  }

  // Thumbnails to pick the image: true label and prediction under each.
  $("thumbs").replaceChildren(...D.images.map((img, i) => {
    const div = document.createElement("div"), c = document.createElement("canvas");
    div.className = "thumb"; c.width = 2 * iw; c.height = 2 * ih;
    const ctx = c.getContext("2d"); ctx.imageSmoothingEnabled = false; ctx.drawImage(sources[i], 0, 0, c.width, c.height);
    const pred = argmax(img.probs);
    div.append(c, document.createTextNode(`#${img.index} ${img.true}`), document.createElement("br"),
               document.createTextNode(`pred ${D.classes[pred]} ${(100 * img.probs[pred]).toFixed(0)}%`));
    div.addEventListener("click", () => { state.image = i; draw(); });
    return div;
  }));
  fillSelect($("layer"), [[-1, "mean of layers"], ...range(L).map(l => [l, `layer ${l + 1}`])]);
  fillSelect($("head"), [[-1, "mean of heads"], ...range(H).map(h => [h, `head ${h + 1}`])]);
  $("view").addEventListener("change", e => { state.view = e.target.value; draw(); });
  $("layer").addEventListener("change", e => { state.layer = Number(e.target.value); draw(); });
  $("head").addEventListener("change", e => { state.head = Number(e.target.value); draw(); });
  $("opacity").addEventListener("input", e => { state.opacity = Number(e.target.value); draw(); });
  $("cls").addEventListener("click", () => { state.query = 0; draw(); });
  $("main").addEventListener("click", e => {
    const r = e.target.getBoundingClientRect();
    const col = Math.min(gw - 1, Math.floor((e.clientX - r.left) / r.width * gw));
    const row = Math.min(gh - 1, Math.floor((e.clientY - r.top) / r.height * gh));
    const q = 1 + row * gw + col;
    state.query = state.query === q ? 0 : q;  // clicking the query patch again returns to the class token
    draw();
  });
  $("about").textContent = `run ${D.run}, epoch ${D.epoch}; ${D.images.length} test images, ${L} layers x ${H} heads, ` +
    `${N} patches + the class token. Weights are stored as 8 bits per value scaled by each row's maximum: ` +
    `each is within 1/510 of its row's largest weight of the model's.`;

  // For tests and the console: the state and what is drawn.
  window.explorer = {state, currentRow, currentMap, draw};
  draw();
})();
