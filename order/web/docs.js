// The API page: /api/openapi.json drawn as operations grouped by tag — method, path, summary,
// parameters, request body and every answer with its schema — then the schemas themselves.
import { call, el, say } from './api.js';

const $ = (selector) => document.querySelector(selector);

/** A schema as a short type expression; a `$ref` links to the schema below. */
function type(schema) {
  if (!schema) return '';
  if (schema.$ref) {
    const name = schema.$ref.split('/').pop();
    return el('a', { href: `#schema-${name}` }, name);
  }
  const kinds = [].concat(schema.type ?? []);
  if (kinds.includes('array')) return el('span', {}, '[', type(schema.items), ']');
  if (schema.oneOf) return el('span', {}, ...schema.oneOf.flatMap((s, i) => [i ? ' | ' : '', type(s)]));
  const base = kinds.filter((k) => k !== 'null').join(' | ') || 'any';
  return `${base}${kinds.includes('null') ? '?' : ''}${schema.pattern ? ` /${schema.pattern}/` : ''}`;
}

function parameters(operation) {
  if (!operation.parameters?.length) return null;
  return el('table', {}, el('thead', {}, el('tr', {}, el('th', {}, 'Parameter'), el('th', {}, 'In'), el('th', {}, 'Type'), el('th', {}, ''))),
    el('tbody', {}, operation.parameters.map((p) => el('tr', {},
      el('td', {}, el('code', {}, p.name), p.required ? ' *' : ''),
      el('td', {}, p.in),
      el('td', {}, type(p.schema)),
      el('td', { class: 'muted' }, p.description ?? '')))));
}

function responses(operation) {
  return el('table', {}, el('thead', {}, el('tr', {}, el('th', {}, 'Answer'), el('th', {}, 'Body'), el('th', {}, ''))),
    el('tbody', {}, Object.entries(operation.responses).map(([status, answer]) => el('tr', {},
      el('td', {}, el('span', { class: `badge answer-${status[0]}xx` }, status)),
      el('td', {}, type(answer.content?.['application/json']?.schema)),
      el('td', { class: 'muted' }, answer.description ?? '')))));
}

function operation(path, method, op) {
  const body = op.requestBody?.content?.['application/json']?.schema;
  return el('details', { class: 'operation', id: op.operationId },
    el('summary', {},
      el('span', { class: `method method-${method}` }, method.toUpperCase()), ' ',
      el('code', {}, path), ' ',
      op.security?.length ? el('span', { class: 'badge' }, 'Bearer') : null, ' ',
      el('span', { class: 'muted' }, op.summary ?? '')),
    op.description ? el('p', {}, op.description) : null,
    parameters(op),
    body ? el('p', {}, 'Body: ', type(body)) : null,
    responses(op));
}

function schemaCard(name, schema) {
  const rows = Object.entries(schema.properties ?? {}).map(([field, s]) => el('tr', {},
    el('td', {}, el('code', {}, field), schema.required?.includes(field) ? ' *' : ''),
    el('td', {}, type(s)),
    el('td', { class: 'muted' }, s.description ?? '')));
  return el('section', { id: `schema-${name}`, class: 'schema' },
    el('h3', {}, name, ' ', el('span', { class: 'muted' }, rows.length ? '' : type(schema))),
    schema.description ? el('p', { class: 'muted' }, schema.description) : null,
    rows.length ? el('table', {}, el('tbody', {}, rows)) : null);
}

try {
  const spec = await call('GET', '/api/openapi.json');
  $('#title').textContent = `${spec.info.title} API ${spec.info.version}`;
  $('#description').textContent = spec.info.description ?? '';
  const byTag = new Map();
  for (const [path, item] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(item)) {
      const tag = op.tags?.[0] ?? 'other';
      if (!byTag.has(tag)) byTag.set(tag, []);
      byTag.get(tag).push(operation(path, method, op));
    }
  }
  $('#operations').replaceChildren(...[...byTag].map(([tag, ops]) =>
    el('section', { class: 'card' }, el('h2', {}, tag), ops)));
  $('#schemas').replaceChildren(...Object.entries(spec.components?.schemas ?? {})
    .map(([name, schema]) => schemaCard(name, schema)));
} catch (e) {
  say($('#message'), e);
}
