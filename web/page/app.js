// gitseal's sealing page. Everything here runs in the browser: the certificate is fetched once
// from where the page came from, values are sealed by seal.wasm (gitseal's Rust sealing core)
// with randomness from crypto.getRandomValues, and nothing typed into the form is ever sent.
// The wasm ABI (web/src/abi.rs): request_buffer/random_buffer, seal/inspect, output_ptr, wipe.

const RANDOM_BYTES_PER_VALUE = 64;
const $ = (id) => document.getElementById(id);
const encoder = new TextEncoder();
const decoder = new TextDecoder();

let wasm = null;   // the instance's exports
let certPem = null;
let rowCount = 0;

// Write `bytes` into a wasm buffer obtained from `alloc(len)`.
function put(alloc, bytes) {
  const ptr = alloc(bytes.length);
  if (ptr === 0 && bytes.length > 0) throw new Error("the input is larger than the page accepts");
  new Uint8Array(wasm.memory.buffer, ptr, bytes.length).set(bytes);
}

// Call `seal` or `inspect` with a request (and random bytes), return the parsed JSON reply.
function call(entry, request, random) {
  try {
    put(wasm.request_buffer, request);
    if (random) put(wasm.random_buffer, random);
    const len = wasm[entry]();
    const reply = new Uint8Array(wasm.memory.buffer, wasm.output_ptr(), len).slice();
    return JSON.parse(decoder.decode(reply));
  } finally {
    wasm.wipe();
    request.fill(0);
    if (random) random.fill(0);
  }
}

function randomBytes(n) {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) crypto.getRandomValues(out.subarray(i, Math.min(n, i + 65536)));
  return out;
}

function age(seconds) {
  const days = Math.floor((Date.now() / 1000 - seconds) / 86400);
  if (days < 0) return "not valid yet";
  if (days === 0) return "today";
  return days === 1 ? "1 day ago" : `${days} days ago`;
}

function showKey(key) {
  $("key-id").textContent = key.id;
  $("key-created").textContent = `${key.notBeforeText} (${age(key.notBefore)})`;
  const expired = key.notAfter * 1000 < Date.now();
  $("key-expires").textContent = key.notAfterText + (expired ? " (expired)" : "");
  $("key-bits").textContent = `RSA ${key.bits} bits`;
  $("key-info").hidden = false;
  $("key-status").textContent = "Values are sealed for this key (from ../v1/cert.pem).";
}

function setStatus(text, isError) {
  const s = $("status");
  s.textContent = text;
  s.classList.toggle("error", Boolean(isError));
}

function addRow(key = "", value = "") {
  rowCount += 1;
  const n = rowCount;
  const li = document.createElement("li");
  li.className = "row";
  const keyLabel = Object.assign(document.createElement("label"), { htmlFor: `key-${n}`, textContent: "Key" });
  const keyInput = Object.assign(document.createElement("input"), {
    id: `key-${n}`, className: "key", value: key, spellcheck: false, autocomplete: "off",
  });
  keyInput.setAttribute("autocapitalize", "off");
  const valueLabel = Object.assign(document.createElement("label"), { htmlFor: `value-${n}`, textContent: "Value" });
  const valueInput = Object.assign(document.createElement("textarea"), {
    id: `value-${n}`, className: "value", value, rows: 2, spellcheck: false, autocomplete: "off",
  });
  valueInput.setAttribute("autocapitalize", "off");
  const remove = Object.assign(document.createElement("button"), {
    type: "button", className: "remove", textContent: "Remove",
  });
  const keyBox = document.createElement("div");
  keyBox.append(keyLabel, keyInput);
  const valueBox = document.createElement("div");
  valueBox.append(valueLabel, valueInput);
  li.append(keyBox, valueBox, remove);
  const update = () => remove.setAttribute("aria-label", `Remove value ${keyInput.value || n}`);
  keyInput.addEventListener("input", update);
  update();
  remove.addEventListener("click", () => {
    const next = li.nextElementSibling || li.previousElementSibling;
    valueInput.value = "";
    li.remove();
    if (!$("rows").children.length) addRow();
    (next ? next.querySelector("input") : $("add")).focus();
  });
  $("rows").append(li);
  return keyInput;
}

function sealForm(event) {
  event.preventDefault();
  if (!wasm || !certPem) return;
  const rows = [...$("rows").querySelectorAll("li")];
  const data = rows
    .map((li) => ({ key: li.querySelector(".key").value.trim(), value: li.querySelector(".value").value }))
    .filter((item) => item.key !== "" || item.value !== "");
  const request = encoder.encode(JSON.stringify({
    cert: certPem,
    name: $("name").value.trim(),
    namespace: $("namespace").value.trim(),
    scope: $("scope").value,
    api: $("api").value,
    type: $("type").value.trim(),
    data,
  }));
  let reply;
  try {
    reply = call("seal", request, randomBytes(data.length * RANDOM_BYTES_PER_VALUE));
  } catch (e) {
    reply = { ok: false, error: e.message };
  }
  if (!reply.ok) {
    setStatus(`Not sealed: ${reply.error}`, true);
    return;
  }
  $("output").value = reply.yaml;
  $("copy").disabled = false;
  $("download").disabled = false;
  const n = data.length;
  setStatus(`Sealed ${n} ${n === 1 ? "value" : "values"} for ${reply.key.id}.`, false);
}

async function copy() {
  const text = $("output").value;
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    $("output").select();
    document.execCommand("copy");
  }
  setStatus("Copied to the clipboard.", false);
}

function download() {
  const name = ($("name").value.trim() || "sealedsecret").replace(/[^a-z0-9.-]/g, "-");
  const url = URL.createObjectURL(new Blob([$("output").value], { type: "application/yaml" }));
  const a = Object.assign(document.createElement("a"), { href: url, download: `${name}.sealedsecret.yaml` });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

async function start() {
  addRow();
  $("add").addEventListener("click", () => addRow().focus());
  $("form").addEventListener("submit", sealForm);
  $("copy").addEventListener("click", copy);
  $("download").addEventListener("click", download);
  $("scope").addEventListener("change", () => {
    $("namespace").required = $("scope").value !== "cluster-wide";
  });
  $("namespace").required = true;
  try {
    const [module, cert] = await Promise.all([
      WebAssembly.instantiateStreaming(fetch("seal.wasm", { cache: "no-store" })),
      fetch("../v1/cert.pem", { cache: "no-store" }).then(async (r) => {
        if (!r.ok) throw new Error(`the server answered ${r.status} for the certificate`);
        return r.text();
      }),
    ]);
    wasm = module.instance.exports;
    const info = call("inspect", encoder.encode(cert));
    if (!info.ok) throw new Error(info.error);
    certPem = cert;
    showKey(info.key);
    $("seal").disabled = false;
    document.body.dataset.ready = "true";
  } catch (e) {
    const s = $("key-status");
    s.textContent = `Cannot seal: ${e.message}`;
    s.classList.add("error");
  }
}

start();
