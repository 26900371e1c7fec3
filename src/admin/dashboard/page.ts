// The dashboard's page: markup and style only, the same for every sluice (no config value,
// deployment or key in it, so it is public like /docs). Everything it shows comes from the
// admin API, called by app.js with the token the operator typed in. Nothing is loaded from
// elsewhere: the admin port is often on a host without internet.

export const DASHBOARD_PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>sluice dashboard</title><link rel="icon" href="data:,">
<style>
:root{--line:#d0d4da;--muted:#5f6670;--ok:#2e8540;--warn:#b36b00;--bad:#b3261e;--accent:#2f6fb0}
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1d1d1f;background:#f6f7f9}
header{display:flex;gap:1rem;align-items:center;padding:.6rem 1.2rem;background:#1d2733;color:#fff}
header h1{font-size:1.1rem;margin:0}header .grow{flex:1}header button{background:none;border:1px solid #8a96a3;color:#fff}
main{padding:1rem 1.2rem;display:grid;gap:1rem}
section{background:#fff;border:1px solid var(--line);border-radius:6px;padding:.6rem 1rem}
h2{font-size:1rem;margin:.2rem 0 .6rem}h3{font-size:.95rem;margin:.3rem 0}
table{border-collapse:collapse;width:100%}th,td{padding:.25rem .5rem;text-align:left;border-top:1px solid #e8eaee;white-space:nowrap}
th{font-weight:600;color:var(--muted);font-size:.85rem}.num{text-align:right;font-variant-numeric:tabular-nums}
tr.replica td{color:var(--muted);font-size:.85rem}tr.replica td:first-child{padding-left:1.6rem}
.why{display:inline-block;max-width:45vw;overflow:hidden;text-overflow:ellipsis;vertical-align:bottom}
code,pre,.mono{font-family:ui-monospace,monospace;font-size:.88em}
.state{display:inline-block;border-radius:3px;padding:0 .4rem;font-size:.8rem;color:#fff;background:var(--muted)}
.state.ready,.state.closed,.state.promoted{background:var(--ok)}.state.starting,.state.restarting,.state.pending,.state.half-open,.state.progressing,.state.waiting,.state.draining{background:var(--warn)}
.state.failed,.state.unhealthy,.state.open,.state.rolled_back,.state.aborted{background:var(--bad)}
#status.live{color:#8fd19e}
button{font:inherit;padding:.15rem .6rem;border:1px solid var(--line);border-radius:4px;background:#fff;cursor:pointer}
button.primary{background:var(--accent);border-color:var(--accent);color:#fff}button.danger{color:var(--bad);border-color:var(--bad)}
.models{display:grid;grid-template-columns:repeat(auto-fill,minmax(26rem,1fr));gap:1rem}
.model{border:1px solid var(--line);border-radius:6px;padding:.5rem .8rem}
.weight{display:grid;grid-template-columns:5rem 1fr 3rem 4rem auto;gap:.5rem;align-items:center;margin:.2rem 0}
.weight input{width:100%}.muted{color:var(--muted)}.row{display:flex;gap:.5rem;align-items:center;flex-wrap:wrap;margin:.4rem 0}
ol.events{margin:.3rem 0;padding-left:1.2rem;font-size:.85rem;max-height:9rem;overflow:auto}
form.deploy{display:flex;gap:.6rem;flex-wrap:wrap;align-items:end}form.deploy label{display:grid;font-size:.85rem;color:var(--muted)}
input,select,textarea{font:inherit;padding:.15rem .3rem;border:1px solid var(--line);border-radius:4px}
pre.logs{background:#11161c;color:#d8dee6;padding:.6rem;border-radius:4px;max-height:22rem;overflow:auto;margin:.4rem 0;white-space:pre-wrap}
#error{display:none;border-color:var(--bad);background:#fdf1f0}#error.shown{display:block}
#login{max-width:28rem}#login.hidden,.hidden{display:none}
</style></head><body>
<header><h1>sluice</h1><span id="status" class="muted">connecting</span><span class="grow"></span><span id="updated"></span>
<button type="button" id="forget" class="hidden">forget token</button></header>
<main>
<section id="error" role="alert"><b id="error-code"></b> <span id="error-message"></span> <span class="muted">request <code id="error-request"></code></span>
<button type="button" id="error-close">dismiss</button></section>
<section id="login" class="hidden"><h2>Admin token</h2>
<p class="muted">This gateway asks for its admin token (<code>admin.token</code> or <code>SLUICE_ADMIN_TOKEN</code>). It is kept in this tab only (sessionStorage) and sent as <code>Authorization: Bearer</code>.</p>
<form id="login-form" class="row"><input id="token" type="password" autocomplete="current-password" aria-label="admin token" size="32" required><button class="primary">Open</button></form></section>
<div id="app" class="hidden">
<section><h2>Deployments</h2>
<table><thead><tr><th>deployment</th><th>runtime</th><th>state</th><th class="num">rps</th><th class="num" title="requests on its replicas now">in flight</th><th class="num" title="requests waiting for a replica now">queued</th><th class="num">p50 ms</th><th class="num">p99 ms</th><th class="num">TTFT p50 ms</th><th class="num">tokens/s</th><th class="num">errors</th><th class="num">cache hits</th><th class="num">cost $</th><th></th></tr></thead>
<tbody id="deployments"></tbody></table>
<p class="muted">Rates over the last 10 s; latencies, cache hit rate and cost since the gateway started.</p></section>
<section><h2>Traffic</h2><div id="models" class="models"></div></section>
<section><h2>Deploy</h2>
<form id="deploy-form" class="deploy">
<label>model<input name="model" required size="12"></label>
<label>version<input name="version" required size="6"></label>
<label>runtime<select name="runtime"><option>sim</option><option>command</option><option>mlflow</option><option>llamacpp</option><option>ollama</option><option>remote</option></select></label>
<label>replicas<input name="replicas" type="number" min="1" value="1" size="3"></label>
<label>more fields (JSON)<input name="extra" placeholder='{"args": ["--token-ms", "5"]}' size="36"></label>
<button class="primary">Deploy</button></form></section>
<section id="logs-section" class="hidden"><h2>Log tail: <span id="logs-id"></span></h2>
<div class="row"><button type="button" id="logs-close">close</button><span class="muted">the last 200 lines, refreshed every 2 s</span></div>
<pre id="logs" class="logs"></pre></section>
</div></main>
<script type="module" src="/ui/app.js"></script>
</body></html>
`;
