// GET /docs: the admin API's OpenAPI document as one self-contained HTML page, rendered
// here once (no script, no stylesheet or font from elsewhere: the admin port is often on a
// host without internet). Operations by tag, then every component schema they refer to.

type Json = Record<string, unknown>;

const METHODS = ['get', 'put', 'post', 'delete'] as const;

export function docsPage(doc: Json): string {
  const info = doc['info'] as { title: string; version: string; description: string };
  const paths = doc['paths'] as Record<string, Record<string, Json>>;
  const components = doc['components'] as { schemas: Record<string, Json>; responses: Record<string, Json> };
  const tags = doc['tags'] as Array<{ name: string; description: string }>;
  const sections = tags.map((tag) => {
    const ops = Object.entries(paths).flatMap(([path, item]) =>
      METHODS.filter((m) => (item[m]?.['tags'] as string[] | undefined)?.includes(tag.name)).map((m) => operation(m, path, item[m]!, components.responses)));
    return `<section><h2 id="tag-${anchor(tag.name)}">${esc(tag.name)}</h2><p>${inline(tag.description)}</p>${ops.join('')}</section>`;
  });
  const schemas = Object.entries(components.schemas).map(([name, s]) =>
    `<section class="schema"><h3 id="schema-${anchor(name)}">${esc(name)}</h3>${schemaBody(s)}</section>`);
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(info.title)} ${esc(info.version)}</title>
<style>
body{font:15px/1.5 system-ui,sans-serif;max-width:70rem;margin:2rem auto;padding:0 1rem;color:#1d1d1f}
code,.path{font-family:ui-monospace,monospace;font-size:.92em}
nav a{margin-right:1rem}
.op{border:1px solid #d0d4da;border-radius:6px;margin:1rem 0;padding:.6rem 1rem}
.op h3{margin:.2rem 0;font-size:1.05rem}
.method{display:inline-block;min-width:4.2rem;text-align:center;border-radius:4px;color:#fff;font-size:.8rem;padding:.1rem .4rem;margin-right:.5rem}
.get{background:#2f6fb0}.post{background:#2e8540}.put{background:#b36b00}.delete{background:#b3261e}
.public{font-size:.8rem;color:#555;margin-left:.5rem}
table{border-collapse:collapse;margin:.4rem 0}td,th{border-top:1px solid #e3e6ea;padding:.2rem .6rem;text-align:left;vertical-align:top}
ul.props{margin:.2rem 0;padding-left:1.2rem}.req{color:#b3261e}.note{color:#555}
</style></head><body>
<h1>${esc(info.title)} <small>${esc(info.version)}</small></h1>
<p>${inline(info.description)} The machine-readable document: <a href="openapi.json"><code>/openapi.json</code></a> (OpenAPI 3.1).</p>
<nav>${tags.map((t) => `<a href="#tag-${anchor(t.name)}">${esc(t.name)}</a>`).join('')}<a href="#schemas">schemas</a></nav>
${sections.join('\n')}
<h2 id="schemas">Schemas</h2>
${schemas.join('\n')}
</body></html>
`;
}

function operation(method: string, path: string, op: Json, responses: Record<string, Json>): string {
  const params = (op['parameters'] as Json[] | undefined) ?? [];
  const body = op['requestBody'] as { content: Record<string, { schema: Json }> } | undefined;
  const rows = Object.entries(op['responses'] as Record<string, Json>).map(([status, r]) => {
    const resolved = typeof r['$ref'] === 'string' ? responses[refName(r['$ref'])]! : r;
    const content = (resolved['content'] ?? {}) as Record<string, { schema: Json }>;
    const shape = Object.entries(content).map(([type, c]) => `<code>${esc(type)}</code> ${schemaLabel(c.schema)}`).join('<br>');
    return `<tr><td><b>${esc(status)}</b></td><td>${inline(String(resolved['description'] ?? ''))}</td><td>${shape}</td></tr>`;
  });
  return `<div class="op" id="op-${anchor(String(op['operationId']))}">
<h3><span class="method ${method}">${method.toUpperCase()}</span><span class="path">${esc(path)}</span>${Array.isArray(op['security']) && (op['security'] as unknown[]).length === 0 ? '<span class="public">no token needed</span>' : ''}</h3>
<p>${inline(String(op['summary']))}${op['description'] === undefined ? '' : `. ${inline(String(op['description']))}`}</p>
${params.length === 0 ? '' : `<table><tr><th>parameter</th><th>in</th><th>schema</th><th></th></tr>${params.map((p) =>
    `<tr><td><code>${esc(String(p['name']))}</code>${p['required'] === true ? ' <span class="req">required</span>' : ''}</td><td>${esc(String(p['in']))}</td><td>${schemaLabel(p['schema'] as Json)}${constraints(p['schema'] as Json)}</td><td>${inline(String(p['description'] ?? ''))}</td></tr>`).join('')}</table>`}
${body === undefined ? '' : `<p>Body: ${Object.entries(body.content).map(([type, c]) => `<code>${esc(type)}</code> ${schemaLabel(c.schema)}`).join(', ')}</p>`}
<table><tr><th>status</th><th></th><th>body</th></tr>${rows.join('')}</table>
</div>`;
}

/** An object's properties as a nested list; anything else as its label and constraints. */
function schemaBody(s: Json): string {
  const props = s['properties'] as Record<string, Json> | undefined;
  const alternatives = (s['anyOf'] ?? s['oneOf']) as Json[] | undefined;
  if (props === undefined) {
    return `<p>${schemaLabel(s)}${constraints(s)}</p>${alternatives === undefined ? '' : `<ul class="props">${alternatives.map((a) => `<li>${schemaBody(a)}</li>`).join('')}</ul>`}`;
  }
  const required = new Set((s['required'] as string[] | undefined) ?? []);
  const items = Object.entries(props).map(([name, p]) => {
    const nested = nestedObject(p);
    return `<li><code>${esc(name)}</code>${required.has(name) ? ' <span class="req">required</span>' : ''}: ${schemaLabel(p)}${constraints(p)}${p['description'] === undefined ? '' : ` <span class="note">${inline(String(p['description']))}</span>`}${nested === null ? '' : schemaBody(nested)}</li>`;
  });
  const closed = s['additionalProperties'] === false ? '' : '<li class="note">other fields may appear</li>';
  return `<ul class="props">${items.join('')}${closed}</ul>`;
}

/** The inline object a property holds (directly, in a list, as one of alternatives), to be listed under it. */
function nestedObject(p: Json): Json | null {
  if (p['properties'] !== undefined) return p;
  const inner = [p['items'], ...((p['anyOf'] ?? p['oneOf'] ?? []) as Json[])] as Array<Json | undefined>;
  for (const candidate of inner) {
    const found = candidate === undefined ? null : nestedObject(candidate);
    if (found !== null) return found;
  }
  return null;
}

function schemaLabel(s: Json | undefined): string {
  if (s === undefined) return 'any';
  if (typeof s['$ref'] === 'string') {
    const name = refName(s['$ref']);
    return `<a href="#schema-${anchor(name)}">${esc(name)}</a>`;
  }
  const alternatives = (s['anyOf'] ?? s['oneOf']) as Json[] | undefined;
  if (alternatives !== undefined) return alternatives.map(schemaLabel).join(' | ');
  if (Array.isArray(s['enum'])) return (s['enum'] as unknown[]).map((v) => `<code>${esc(JSON.stringify(v))}</code>`).join(' | ');
  const type = s['type'];
  const types = Array.isArray(type) ? (type as string[]) : typeof type === 'string' ? [type] : [];
  if (types.includes('array')) return `list of ${schemaLabel(s['items'] as Json | undefined)}`;
  if (types.includes('object') && typeof s['additionalProperties'] === 'object') return `map of ${schemaLabel(s['additionalProperties'] as Json)}`;
  return types.length === 0 ? 'any' : types.join(' | ');
}

function constraints(s: Json): string {
  const parts: string[] = [];
  if (s['minimum'] !== undefined && s['maximum'] !== undefined) parts.push(`${String(s['minimum'])}..${String(s['maximum'])}`);
  else if (s['minimum'] !== undefined) parts.push(`&ge; ${String(s['minimum'])}`);
  else if (s['maximum'] !== undefined && s['exclusiveMinimum'] === undefined) parts.push(`&le; ${String(s['maximum'])}`);
  if (s['exclusiveMinimum'] !== undefined) parts.push(`&gt; ${String(s['exclusiveMinimum'])}${s['maximum'] === undefined ? '' : ` and &le; ${String(s['maximum'])}`}`);
  if (s['pattern'] !== undefined) parts.push(`matching <code>${esc(String(s['pattern']))}</code>`);
  if (s['minLength'] !== undefined) parts.push(`at least ${String(s['minLength'])} characters`);
  if (s['default'] !== undefined) parts.push(`default <code>${esc(JSON.stringify(s['default']))}</code>`);
  if (s['writeOnly'] === true) parts.push('never shown');
  return parts.length === 0 ? '' : ` <span class="note">(${parts.join(', ')})</span>`;
}

function refName(ref: string): string {
  return ref.slice(ref.lastIndexOf('/') + 1);
}

function anchor(s: string): string {
  return s.replace(/[^A-Za-z0-9_-]/g, '-');
}

function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** Descriptions use Markdown's `code` spans only. */
function inline(s: string): string {
  return esc(s).replace(/`([^`]+)`/g, '<code>$1</code>');
}
