#!/usr/bin/env python3
"""A Kubernetes API server emulator for Serval's end-to-end tests, built on kmock (PyPI).

    python3 e2e/kube-emulator/emulator.py --port PORT [--without GROUP/PLURAL]...

Listens on 127.0.0.1:PORT (0 picks a free port) over plain HTTP, prints ``READY <port>`` on stdout
once it listens, and logs one line per request on stderr. Exits when its parent process is gone.

kmock provides the server (``kmock.Server``), the resource registry and discovery (``/api``,
``/apis``, ``/apis/<group>/<version>``) and the object store (``KubernetesEmulator.objects``).
kmock's own object semantics are not what kube-rs needs (no resourceVersion, whole-object patches
on ``/status``, every watch replaying everything, ``/api/v1/namespaces`` failing to parse), so
every request on a resource URL is served here instead, like the real API server does:

- Every change gets a new ``metadata.resourceVersion`` from one global counter; a list carries the
  counter as its ``metadata.resourceVersion``. A patch that changes nothing is not a write: no new
  resourceVersion, no watch event (as in Kubernetes).
- Create sets ``uid``, ``creationTimestamp``, ``generation: 1``, ``apiVersion`` and ``kind``, and
  drops ``.status`` of kinds with a status subresource (set it with a ``/status`` patch).
  Namespaced objects need their Namespace to exist (``default``, ``kube-system``,
  ``kube-public`` and ``kube-node-lease`` exist from the start).
- PATCH of an object keeps its ``.status`` (status-subresource kinds) and bumps ``generation``
  when anything outside ``metadata`` and ``status`` changed; PATCH of ``/status`` changes only
  ``.status``. Patch types: JSON merge patch (RFC 7386), JSON patch (RFC 6902), and strategic merge
  and server-side apply, both approximated as a JSON merge patch (apply creates a missing object).
- A patch or PUT whose resulting ``metadata.resourceVersion`` differs from the stored one answers
  409 Conflict; POST of an existing name 409 AlreadyExists; a missing object 404 NotFound; all as
  ``Status`` objects. DELETE honours ``preconditions`` and finalizers (sets deletionTimestamp;
  removing the last finalizer deletes). Deleting a Namespace deletes the objects in it.
- Watch (``?watch=true``): without ``resourceVersion`` (or ``0``) it first sends ADDED for every
  current object; with one it sends every change after it (ERROR 410 Expired if it is older than
  the last ``/__emulator/compact``). ``sendInitialEvents=true`` ends the initial ADDED events with a
  BOOKMARK carrying ``k8s.io/initial-events-end``. ``timeoutSeconds`` ends the stream.
  ``labelSelector`` and ``fieldSelector`` (any dotted field, ``=``/``==``/``!=``) filter lists and
  watches; an object leaving or entering a watch's selection shows as DELETED or ADDED.
- Not emulated: ``limit``/``continue`` (lists return everything), list ``resourceVersion``
  (always the latest), defaulting and validation, managedFields, real server-side apply, deletion
  propagation other than Namespace, DELETE of collections, admission and RBAC.

Test endpoints:

- ``GET /__emulator/requests``: every non-GET request so far, in order, as
  ``{"method", "path", "query", "contentType", "body"}`` (body parsed JSON, or null);
  ``DELETE /__emulator/requests`` clears it.
- ``POST /__emulator/compact``: watches from a resourceVersion older than now get 410 Expired.
- ``POST /__emulator/close-watches``: ends every open watch (clients re-watch).
"""

import argparse
import asyncio
import bisect
import copy
import datetime
import json
import os
import re
import secrets
import sys
import time
import urllib.parse
import uuid
from typing import Any

import aiohttp.web
import attrs
import jsonpatch
import kmock

GATEWAY = 'gateway.networking.k8s.io'

# group, version, plural, kind, namespaced, has a status subresource
RESOURCES: list[tuple[str, str, str, str, bool, bool]] = [
    (GATEWAY, 'v1', 'gatewayclasses', 'GatewayClass', False, True),
    (GATEWAY, 'v1', 'gateways', 'Gateway', True, True),
    (GATEWAY, 'v1', 'httproutes', 'HTTPRoute', True, True),
    (GATEWAY, 'v1', 'grpcroutes', 'GRPCRoute', True, True),
    (GATEWAY, 'v1', 'tlsroutes', 'TLSRoute', True, True),
    (GATEWAY, 'v1', 'referencegrants', 'ReferenceGrant', True, False),
    (GATEWAY, 'v1alpha2', 'tcproutes', 'TCPRoute', True, True),
    (GATEWAY, 'v1alpha2', 'udproutes', 'UDPRoute', True, True),
    ('', 'v1', 'services', 'Service', True, True),
    ('', 'v1', 'secrets', 'Secret', True, False),
    ('', 'v1', 'namespaces', 'Namespace', False, True),
    ('discovery.k8s.io', 'v1', 'endpointslices', 'EndpointSlice', True, False),
    ('coordination.k8s.io', 'v1', 'leases', 'Lease', True, False),
]

INITIAL_NAMESPACES = ['default', 'kube-system', 'kube-public', 'kube-node-lease']

MERGE_PATCH = 'application/merge-patch+json'
JSON_PATCH = 'application/json-patch+json'
STRATEGIC_PATCH = 'application/strategic-merge-patch+json'
APPLY_PATCH = 'application/apply-patch+yaml'


@attrs.frozen
class Res:
    """One served resource."""
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    status: bool

    @property
    def api_version(self) -> str:
        return f'{self.group}/{self.version}' if self.group else self.version

    @property
    def qualified(self) -> str:
        """As the API server names it in messages: ``httproutes.gateway.networking.k8s.io``."""
        return f'{self.plural}.{self.group}' if self.group else self.plural

    @property
    def key(self) -> kmock.resource:
        return kmock.resource(self.group, self.version, self.plural)


class ApiError(Exception):
    """An error answered as a Kubernetes ``Status``."""

    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details


def status_body(code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    body = {'kind': 'Status', 'apiVersion': 'v1', 'metadata': {}, 'status': 'Failure',
            'message': message, 'reason': reason, 'code': code}
    if details:
        body['details'] = details
    return body


def not_found(res: Res, name: str) -> ApiError:
    return ApiError(404, 'NotFound', f'{res.qualified} "{name}" not found',
                    {'name': name, 'group': res.group, 'kind': res.plural})


def conflict(res: Res, name: str) -> ApiError:
    return ApiError(409, 'Conflict',
                    f'Operation cannot be fulfilled on {res.qualified} "{name}": the object has been '
                    'modified; please apply your changes to the latest version and try again',
                    {'name': name, 'group': res.group, 'kind': res.plural})


def now_rfc3339() -> str:
    return datetime.datetime.now(tz=datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge recursively, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def version_rank(version: str) -> tuple[int, int, int]:
    """Kubernetes version priority: GA before beta before alpha, then higher numbers first."""
    m = re.fullmatch(r'v(\d+)(?:(alpha|beta)(\d+))?', version)
    if not m:
        return (-1, 0, 0)
    stability = {'alpha': 0, 'beta': 1, None: 2}[m.group(2)]
    return (stability, int(m.group(1)), int(m.group(3) or 0))


# --- selectors -----------------------------------------------------------------------------------

def split_terms(selector: str) -> list[str]:
    """Split on commas outside parentheses (``a in (x,y),b``)."""
    terms, depth, current = [], 0, ''
    for ch in selector:
        if ch == '(':
            depth += 1
        elif ch == ')':
            depth -= 1
        if ch == ',' and depth == 0:
            terms.append(current)
            current = ''
        else:
            current += ch
    terms.append(current)
    return [t.strip() for t in terms if t.strip()]


def label_matcher(selector: str | None):
    if not selector:
        return lambda labels: True
    checks = []
    for term in split_terms(selector):
        if m := re.fullmatch(r'(\S+)\s+(in|notin)\s+\((.*)\)', term):
            key, op, values = m.group(1), m.group(2), {v.strip() for v in m.group(3).split(',')}
            if op == 'in':
                checks.append(lambda l, k=key, vs=values: l.get(k) in vs)
            else:
                checks.append(lambda l, k=key, vs=values: l.get(k) not in vs)
        elif m := re.fullmatch(r'([^=!\s]+)\s*(==|=|!=)\s*(\S*)', term):
            key, op, value = m.groups()
            if op == '!=':
                checks.append(lambda l, k=key, v=value: l.get(k) != v)
            else:
                checks.append(lambda l, k=key, v=value: l.get(k) == v)
        elif m := re.fullmatch(r'!\s*(\S+)', term):
            checks.append(lambda l, k=m.group(1): k not in l)
        elif re.fullmatch(r'\S+', term):
            checks.append(lambda l, k=term: k in l)
        else:
            raise ApiError(400, 'BadRequest', f'unable to parse requirement: {term!r}')
    return lambda labels: all(check(labels) for check in checks)


def field_value(obj: dict[str, Any], path: str) -> str:
    value: Any = obj
    for part in path.split('.'):
        value = value.get(part) if isinstance(value, dict) else None
    if value is None:
        return ''
    if isinstance(value, bool):
        return 'true' if value else 'false'
    return str(value)


def field_matcher(selector: str | None):
    if not selector:
        return lambda obj: True
    checks = []
    for term in split_terms(selector):
        m = re.fullmatch(r'([^=!\s]+)\s*(==|=|!=)\s*(\S*)', term)
        if not m:
            raise ApiError(400, 'BadRequest', f'invalid field selector: {term!r}')
        path, op, value = m.groups()
        if op == '!=':
            checks.append(lambda o, p=path, v=value: field_value(o, p) != v)
        else:
            checks.append(lambda o, p=path, v=value: field_value(o, p) == v)
    return lambda obj: all(check(obj) for check in checks)


@attrs.frozen
class Selection:
    """What a list or watch asks for: namespace, name, label and field selectors."""
    namespace: str | None
    name: str | None
    labels: Any
    fields: Any

    def __call__(self, obj: dict[str, Any]) -> bool:
        meta = obj.get('metadata', {})
        return ((self.namespace is None or meta.get('namespace') == self.namespace)
                and (self.name is None or meta.get('name') == self.name)
                and self.labels(meta.get('labels') or {})
                and self.fields(obj))


# --- the emulator --------------------------------------------------------------------------------

@attrs.define(kw_only=True)
class Emulator(kmock.KubernetesEmulator):
    served: dict[tuple[str, str, str], Res] = attrs.field(factory=dict)
    rv: int = attrs.field(default=0, init=False)
    # Every change, in order: {'rv', 'res', 'type', 'object', 'old'} (old: None for ADDED).
    changes: list[dict[str, Any]] = attrs.field(factory=list, init=False)
    changed: asyncio.Event = attrs.field(factory=asyncio.Event, init=False)
    compacted: int = attrs.field(default=0, init=False)
    watch_epoch: int = attrs.field(default=0, init=False)
    request_log: list[dict[str, Any]] = attrs.field(factory=list, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        for res in self.served.values():
            self.resources[res.key] = {
                'kind': res.kind, 'singular': res.kind.lower(), 'namespaced': res.namespaced,
                'verbs': ['create', 'delete', 'get', 'list', 'patch', 'update', 'watch'],
                'shortnames': [], 'categories': [],
                'subresources': ['status'] if res.status else [],
            }
        namespaces = self.served.get(('', 'v1', 'namespaces'))
        if namespaces is not None:
            for name in INITIAL_NAMESPACES:
                self.do_create(namespaces, None, {'metadata': {'name': name}})

    # --- HTTP entry point ---

    async def __call__(self, raw: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        started = time.monotonic()
        body = await raw.read()
        try:
            data = json.loads(body) if body else None
        except ValueError:
            data = None
        entry = None
        if raw.method != 'GET' and not raw.path.startswith('/__emulator/'):
            entry = {
                'method': raw.method, 'path': raw.path, 'query': dict(raw.query),
                'contentType': raw.headers.get('Content-Type'), 'body': data,
                'userAgent': raw.headers.get('User-Agent'), 'status': None,
            }
            self.request_log.append(entry)
        is_watch = raw.method == 'GET' and raw.query.get('watch') in ('true', '1')
        if is_watch:
            log(f'{raw.method} {raw.path_qs} -> watch opened')
        outcome = 'cancelled (client gone)'
        try:
            try:
                response = await self.dispatch(raw, data)
            except ApiError as e:
                response = aiohttp.web.json_response(status_body(e.code, e.reason, e.message, e.details),
                                                     status=e.code)
            except Exception as e:  # a bug here: answer 500 with the error, keep serving
                response = aiohttp.web.json_response(status_body(500, 'InternalError', repr(e)), status=500)
            outcome = str(response.status)
            if entry is not None:
                entry['status'] = response.status
            return response
        finally:
            ms = (time.monotonic() - started) * 1000
            log(f'{raw.method} {raw.path_qs} -> {outcome}{" watch closed" if is_watch else ""} ({ms:.0f} ms)')

    async def dispatch(self, raw: aiohttp.web.BaseRequest, data: Any) -> aiohttp.web.StreamResponse:
        path, method = raw.path, raw.method
        if path.startswith('/__emulator/'):
            return self.serve_emulator(method, path)
        if method == 'GET' and path in ('/healthz', '/readyz', '/livez'):
            return aiohttp.web.Response(text='ok')
        route = self.route(path)
        if route is None:  # discovery and anything else: kmock
            return await super().__call__(raw)
        res, namespace, name, sub = route
        query = raw.query
        if method == 'GET' and query.get('watch') in ('true', '1'):
            return await self.serve_watch(raw, res, namespace, name)
        if method == 'GET' and name is None:
            return json_ok(self.do_list(res, namespace, query))
        if method == 'GET':
            return json_ok(self.do_get(res, namespace, name))
        dry_run = 'dryRun' in query
        if method == 'POST' and name is None:
            if not isinstance(data, dict):
                raise ApiError(400, 'BadRequest', 'the body must be a JSON object')
            return json_ok(self.do_create(res, namespace, data, dry_run=dry_run), 201)
        if method == 'PATCH' and name is not None:
            content_type = raw.headers.get('Content-Type', '').split(';')[0].strip()
            obj, created = self.do_patch(res, namespace, name, sub, content_type, data, dry_run=dry_run)
            return json_ok(obj, 201 if created else 200)
        if method == 'PUT' and name is not None:
            if not isinstance(data, dict):
                raise ApiError(400, 'BadRequest', 'the body must be a JSON object')
            return json_ok(self.do_replace(res, namespace, name, sub, data, dry_run=dry_run))
        if method == 'DELETE' and name is not None and sub is None:
            return json_ok(self.do_delete(res, namespace, name, data if isinstance(data, dict) else {},
                                       dry_run=dry_run))
        raise ApiError(405, 'MethodNotAllowed',
                       'the server does not allow this method on the requested resource')

    def route(self, path: str) -> tuple[Res, str | None, str | None, str | None] | None:
        """A resource URL as (resource, namespace, name, subresource); None for other URLs.

        Raises 404 for resource-shaped URLs of resources that are not served."""
        parts = [urllib.parse.unquote(p) for p in path.strip('/').split('/')]
        if len(parts) >= 3 and parts[0] == 'api':
            group, version, rest = '', parts[1], parts[2:]
        elif len(parts) >= 4 and parts[0] == 'apis':
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            return None
        namespace = None
        if rest[0] == 'namespaces' and len(rest) >= 3:
            res = self.served.get((group, version, rest[2]))
            if res is not None and res.namespaced:
                namespace, rest = rest[1], rest[2:]
        res = self.served.get((group, version, rest[0]))
        missing = ApiError(404, 'NotFound', 'the server could not find the requested resource')
        if res is None or len(rest) > 3 or (len(rest) == 3 and not (rest[2] == 'status' and res.status)):
            raise missing
        if namespace is not None and not res.namespaced:
            raise missing
        name = rest[1] if len(rest) >= 2 else None
        sub = rest[2] if len(rest) == 3 else None
        if name is not None and res.namespaced and namespace is None:
            raise missing
        return res, namespace, name, sub

    # --- storage and change log ---

    def lookup(self, res: Res, namespace: str | None, name: str) -> dict[str, Any] | None:
        key = (res.key, namespace, name)
        if key in self.objects and not self.objects[key].deleted:
            return copy.deepcopy(self.objects[key].raw)
        return None

    def store(self, res: Res, obj: dict[str, Any] | None, old: dict[str, Any] | None) -> None:
        """Records a change: `obj` None deletes `old`. Assigns the next resourceVersion."""
        self.rv += 1
        rv = str(self.rv)
        meta = (obj if obj is not None else old)['metadata']
        key = (res.key, meta.get('namespace'), meta['name'])
        if obj is None:
            event_obj = copy.deepcopy(old)
            event_obj['metadata']['resourceVersion'] = rv
            del self.objects[key]
            event = {'type': 'DELETED', 'object': event_obj}
        else:
            obj['metadata']['resourceVersion'] = rv
            ordered = {k: obj.pop(k) for k in ('apiVersion', 'kind', 'metadata') if k in obj}
            ordered.update(obj)
            obj.clear()
            obj.update(ordered)
            self.objects[key] = copy.deepcopy(obj)
            event = {'type': 'ADDED' if old is None else 'MODIFIED', 'object': copy.deepcopy(obj)}
        self.changes.append({'rv': self.rv, 'res': res, 'old': old, **event})
        self.changed.set()
        self.changed = asyncio.Event()

    def objects_of(self, res: Res, selection: Selection) -> list[dict[str, Any]]:
        found = [obj.raw for (key, _, _), obj in self.objects.items()
                 if key == res.key and not obj.deleted and selection(obj.raw)]
        found.sort(key=lambda o: (o['metadata'].get('namespace') or '', o['metadata']['name']))
        return copy.deepcopy(found)

    # --- verbs ---

    def selection(self, namespace: str | None, name: str | None, query: Any) -> Selection:
        return Selection(namespace, name, label_matcher(query.get('labelSelector')),
                         field_matcher(query.get('fieldSelector')))

    def do_list(self, res: Res, namespace: str | None, query: Any) -> dict[str, Any]:
        return {
            'kind': f'{res.kind}List', 'apiVersion': res.api_version,
            'metadata': {'resourceVersion': str(self.rv)},
            'items': self.objects_of(res, self.selection(namespace, None, query)),
        }

    def do_get(self, res: Res, namespace: str | None, name: str) -> dict[str, Any]:
        obj = self.lookup(res, namespace, name)
        if obj is None:
            raise not_found(res, name)
        return obj

    def do_create(self, res: Res, namespace: str | None, body: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        obj = copy.deepcopy(body)
        meta = obj.get('metadata')
        if not isinstance(meta, dict):
            meta = obj['metadata'] = {}
        if not meta.get('name') and meta.get('generateName'):
            meta['name'] = meta['generateName'] + secrets.token_hex(3)[:5]
        name = meta.get('name')
        if not name:
            raise ApiError(422, 'Invalid', f'{res.kind} "" is invalid: metadata.name: Required value: name or generateName is required')
        if res.namespaced:
            if meta.get('namespace') and namespace and meta['namespace'] != namespace:
                raise ApiError(400, 'BadRequest', 'the namespace of the provided object does not match the namespace sent on the request')
            namespace = namespace or meta.get('namespace')
            if not namespace:
                raise ApiError(404, 'NotFound', 'the server could not find the requested resource')
            meta['namespace'] = namespace
            namespaces = self.served.get(('', 'v1', 'namespaces'))
            if namespaces is not None and self.lookup(namespaces, None, namespace) is None:
                raise ApiError(404, 'NotFound', f'namespaces "{namespace}" not found',
                               {'name': namespace, 'kind': 'namespaces'})
        else:
            meta.pop('namespace', None)
        if self.lookup(res, meta.get('namespace'), name) is not None:
            raise ApiError(409, 'AlreadyExists', f'{res.qualified} "{name}" already exists',
                           {'name': name, 'group': res.group, 'kind': res.plural})
        obj = {'apiVersion': res.api_version, 'kind': res.kind, 'metadata': meta,
               **{k: v for k, v in obj.items() if k not in ('apiVersion', 'kind', 'metadata')}}
        for field in ('deletionTimestamp', 'deletionGracePeriodSeconds', 'managedFields'):
            meta.pop(field, None)
        meta['uid'] = str(uuid.uuid4())
        meta['creationTimestamp'] = now_rfc3339()
        meta['generation'] = 1
        meta['resourceVersion'] = str(self.rv)  # replaced by store()
        if res.status:
            obj.pop('status', None)
        if res.kind == 'Namespace':
            meta.setdefault('labels', {})['kubernetes.io/metadata.name'] = name
            obj['status'] = {'phase': 'Active'}
        if not dry_run:
            self.store(res, obj, None)
        return copy.deepcopy(obj)

    def do_patch(self, res: Res, namespace: str | None, name: str, sub: str | None, content_type: str,
              data: Any, *, dry_run: bool = False) -> tuple[dict[str, Any], bool]:
        current = self.lookup(res, namespace, name)
        if content_type not in (MERGE_PATCH, JSON_PATCH, STRATEGIC_PATCH, APPLY_PATCH):
            raise ApiError(415, 'UnsupportedMediaType', f'the body of the request was in an unknown format - accepted media types include: {JSON_PATCH}, {MERGE_PATCH}, {APPLY_PATCH}, {STRATEGIC_PATCH}')
        if current is None:
            if content_type == APPLY_PATCH and sub is None and isinstance(data, dict):
                body = merge_patch({'metadata': {'name': name}}, data)
                return self.do_create(res, namespace, body, dry_run=dry_run), True
            raise not_found(res, name)
        if content_type == JSON_PATCH:
            if not isinstance(data, list):
                raise ApiError(400, 'BadRequest', 'a JSON patch must be a JSON array')
            try:
                patched = jsonpatch.apply_patch(current, data, in_place=False)
            except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, KeyError, TypeError) as e:
                raise ApiError(422, 'Invalid', f'the JSON patch could not be applied: {e}')
        else:
            if not isinstance(data, dict):
                raise ApiError(400, 'BadRequest', 'a merge patch must be a JSON object')
            patched = merge_patch(current, data)
        return self.update(res, current, patched, sub, dry_run=dry_run), False

    def do_replace(self, res: Res, namespace: str | None, name: str, sub: str | None, body: dict[str, Any],
                *, dry_run: bool = False) -> dict[str, Any]:
        current = self.lookup(res, namespace, name)
        if current is None:
            raise not_found(res, name)
        return self.update(res, current, copy.deepcopy(body), sub, dry_run=dry_run)

    def update(self, res: Res, current: dict[str, Any], wanted: dict[str, Any], sub: str | None,
               *, dry_run: bool) -> dict[str, Any]:
        """Stores `wanted` (the patched or replacing object) the way the API server would."""
        name = current['metadata']['name']
        sent_meta = wanted.get('metadata') if isinstance(wanted.get('metadata'), dict) else {}
        sent_rv = sent_meta.get('resourceVersion')
        if sent_rv not in (None, '') and sent_rv != current['metadata']['resourceVersion']:
            raise conflict(res, name)
        if sub == 'status':
            new = copy.deepcopy(current)
            if 'status' in wanted:
                new['status'] = wanted['status']
            else:
                new.pop('status', None)
        else:
            new = wanted
            if res.status:
                if 'status' in current:
                    new['status'] = current['status']
                else:
                    new.pop('status', None)
            meta = sent_meta
            new['metadata'] = meta
            for field in ('name', 'namespace', 'uid', 'creationTimestamp', 'generation',
                          'resourceVersion', 'deletionTimestamp', 'deletionGracePeriodSeconds'):
                if field in current['metadata']:
                    meta[field] = current['metadata'][field]
                else:
                    meta.pop(field, None)
            new['apiVersion'], new['kind'] = current['apiVersion'], current['kind']
            if res.kind == 'Namespace':
                meta.setdefault('labels', {})['kubernetes.io/metadata.name'] = name
        new['metadata']['resourceVersion'] = current['metadata']['resourceVersion']
        if new == current:
            return new  # nothing changed: no write, no new resourceVersion, no event

        def spec_part(obj: dict[str, Any]) -> dict[str, Any]:
            return {k: v for k, v in obj.items()
                    if k not in ('metadata', 'apiVersion', 'kind') and not (k == 'status' and res.status)}

        if spec_part(new) != spec_part(current):
            new['metadata']['generation'] = current['metadata'].get('generation', 1) + 1
        if dry_run:
            return new
        meta = new['metadata']
        if meta.get('deletionTimestamp') and not meta.get('finalizers'):
            self.store(res, None, new)
            deleted = copy.deepcopy(new)
            deleted['metadata']['resourceVersion'] = str(self.rv)
            return deleted
        self.store(res, new, current)
        return copy.deepcopy(new)

    def do_delete(self, res: Res, namespace: str | None, name: str, options: dict[str, Any],
               *, dry_run: bool = False) -> dict[str, Any]:
        current = self.lookup(res, namespace, name)
        if current is None:
            raise not_found(res, name)
        preconditions = options.get('preconditions') or {}
        for field, label in (('resourceVersion', 'ResourceVersion'), ('uid', 'UID')):
            wanted = preconditions.get(field)
            if wanted and wanted != current['metadata'].get(field):
                raise ApiError(409, 'Conflict',
                               f'Operation cannot be fulfilled on {res.qualified} "{name}": Precondition failed: '
                               f'{label} in precondition: {wanted}, {label} in object meta: {current["metadata"].get(field)}',
                               {'name': name, 'group': res.group, 'kind': res.plural})
        if dry_run:
            return current
        if current['metadata'].get('finalizers'):
            if current['metadata'].get('deletionTimestamp'):
                return current
            new = copy.deepcopy(current)
            new['metadata']['deletionTimestamp'] = now_rfc3339()
            new['metadata']['deletionGracePeriodSeconds'] = 0
            self.store(res, new, current)
            return copy.deepcopy(new)
        if res.kind == 'Namespace':  # the namespace controller's job, done at once
            for other in self.served.values():
                if other.namespaced:
                    for obj in self.objects_of(other, Selection(name, None, lambda _: True, lambda _: True)):
                        self.store(other, None, obj)
        self.store(res, None, current)
        current['metadata']['resourceVersion'] = str(self.rv)
        return current

    # --- watch ---

    async def serve_watch(self, raw: aiohttp.web.BaseRequest, res: Res, namespace: str | None,
                          name: str | None) -> aiohttp.web.StreamResponse:
        query = raw.query
        selection = self.selection(namespace, name, query)
        timeout = query.get('timeoutSeconds')
        deadline = time.monotonic() + float(timeout) if timeout else None
        since = query.get('resourceVersion') or ''
        initial = query.get('sendInitialEvents') == 'true'
        if since not in ('', '0') and not since.isdigit():
            raise ApiError(400, 'BadRequest', f'invalid resourceVersion: {since!r}')
        epoch = self.watch_epoch

        response = aiohttp.web.StreamResponse(status=200, headers={'Content-Type': 'application/json'})
        await response.prepare(raw)

        async def send(event: dict[str, Any]) -> None:
            await response.write(json.dumps(event).encode() + b'\n')

        try:
            if since in ('', '0') or initial:
                cursor = self.rv
                for obj in self.objects_of(res, selection):
                    await send({'type': 'ADDED', 'object': obj})
                if initial:
                    await send({'type': 'BOOKMARK', 'object': {
                        'kind': res.kind, 'apiVersion': res.api_version,
                        'metadata': {'resourceVersion': str(cursor),
                                     'annotations': {'k8s.io/initial-events-end': 'true'}}}})
            else:
                cursor = int(since)
                if cursor < self.compacted:
                    await send({'type': 'ERROR', 'object': status_body(
                        410, 'Expired', f'too old resource version: {cursor} ({self.compacted})')})
                    return response
            position = bisect.bisect_right(self.changes, cursor, key=lambda c: c['rv'])
            while epoch == self.watch_epoch:
                while position < len(self.changes):
                    change = self.changes[position]
                    position += 1
                    if change['res'] != res:
                        continue
                    event = watch_event(change, selection)
                    if event is not None:
                        await send(event)
                if raw.transport is None or raw.transport.is_closing():
                    break
                wait = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
                if wait <= 0:
                    break
                try:
                    await asyncio.wait_for(self.changed.wait(), wait)
                except asyncio.TimeoutError:
                    pass
            await response.write_eof()
        except (ConnectionError, RuntimeError):
            pass  # the client went away
        return response

    # --- test endpoints ---

    def serve_emulator(self, method: str, path: str) -> aiohttp.web.StreamResponse:
        if path == '/__emulator/requests' and method == 'GET':
            return aiohttp.web.json_response(self.request_log)
        if path == '/__emulator/requests' and method == 'DELETE':
            self.request_log.clear()
            return aiohttp.web.json_response([])
        if path == '/__emulator/compact' and method == 'POST':
            self.compacted = self.rv
            return aiohttp.web.json_response({'compacted': str(self.rv)})
        if path == '/__emulator/close-watches' and method == 'POST':
            self.watch_epoch += 1
            self.changed.set()
            self.changed = asyncio.Event()
            return aiohttp.web.json_response({'closed': True})
        raise ApiError(404, 'NotFound', f'no emulator endpoint {method} {path}')

    # --- discovery (kmock's, made deterministic and closer to the API server) ---

    async def _serve_api(self, request: kmock.Request) -> Any:
        result = await super()._serve_api(request)
        return {**result, 'serverAddressByClientCIDRs': [{'clientCIDR': '0.0.0.0/0', 'serverAddress': '127.0.0.1'}]}

    async def _serve_apis(self, request: kmock.Request) -> Any:
        result = await super()._serve_apis(request)
        result['groups'] = sorted((fix_group(g) for g in result['groups']), key=lambda g: g['name'])
        return result

    async def _serve_group(self, request: kmock.Request) -> Any:
        return fix_group(await super()._serve_group(request))

    async def _serve_version(self, request: kmock.Request) -> Any:
        result = await super()._serve_version(request)
        for entry in result['resources']:
            entry['verbs'] = ['get', 'patch', 'update'] if '/' in entry['name'] else sorted(entry['verbs'])
        result['resources'].sort(key=lambda r: r['name'])
        return result

    async def _render_error(self, exc: Exception) -> aiohttp.web.StreamResponse:
        if isinstance(exc, kmock.KubernetesError) and exc.status == 404:
            return aiohttp.web.json_response(
                status_body(404, 'NotFound', 'the server could not find the requested resource'), status=404)
        return await super()._render_error(exc)


def fix_group(group: dict[str, Any]) -> dict[str, Any]:
    """kmock picks a random preferred version (set order); the API server picks the most stable."""
    versions = sorted(group['versions'], key=lambda v: version_rank(v['version']), reverse=True)
    return {**group, 'versions': versions, 'preferredVersion': versions[0]}


def watch_event(change: dict[str, Any], selection: Selection) -> dict[str, Any] | None:
    """The event a watch with `selection` sees for `change`, if any (as the API server's cache)."""
    now = selection(change['object'])
    was = change['old'] is not None and change['type'] == 'MODIFIED' and selection(change['old'])
    if change['type'] == 'MODIFIED':
        if now and was:
            return {'type': 'MODIFIED', 'object': change['object']}
        if now:
            return {'type': 'ADDED', 'object': change['object']}
        if was:
            old = copy.deepcopy(change['old'])
            old['metadata']['resourceVersion'] = change['object']['metadata']['resourceVersion']
            return {'type': 'DELETED', 'object': old}
        return None
    return {'type': change['type'], 'object': change['object']} if now else None


def json_ok(body: Any, status: int = 200) -> aiohttp.web.Response:
    return aiohttp.web.json_response(body, status=status)


def log(line: str) -> None:
    stamp = datetime.datetime.now().strftime('%H:%M:%S.%f')[:-3]
    print(f'{stamp} {line}', file=sys.stderr, flush=True)


def served_resources(without: list[str]) -> dict[tuple[str, str, str], Res]:
    served = {(g, v, p): Res(g, v, p, k, ns, st) for g, v, p, k, ns, st in RESOURCES}
    for spec in without:
        parts = spec.split('/')
        if len(parts) == 1:
            parts = ['', parts[0]]
        group = '' if parts[0] in ('', 'core') else parts[0]
        matched = [key for key in served
                   if key[0] == group and key[2] == parts[-1] and (len(parts) == 2 or key[1] == parts[1])]
        if len(parts) > 3 or not matched:
            sys.exit(f'--without {spec}: no such resource (use GROUP/PLURAL or GROUP/VERSION/PLURAL)')
        for key in matched:
            del served[key]
    return served


async def exit_with_parent() -> None:
    """Exits when the process that started us is gone (a test binary killed before its cleanup)."""
    parent = os.getppid()
    while True:
        await asyncio.sleep(1)
        if os.getppid() != parent:
            log('parent process gone: exiting')
            os._exit(0)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--port', type=int, required=True, help='port on 127.0.0.1 (0: any free port)')
    parser.add_argument('--without', action='append', default=[], metavar='GROUP/PLURAL',
                        help='leave a resource out, as if its CRD were not installed (core: /PLURAL)')
    args = parser.parse_args()
    served = served_resources(args.without)
    async with Emulator(served=served) as emulator, kmock.Server(emulator, host='127.0.0.1', port=args.port) as server:
        log(f'serving {len(served)} resources on http://127.0.0.1:{server.port}'
            f' (left out: {", ".join(args.without) or "none"})')
        print(f'READY {server.port}', flush=True)
        await exit_with_parent()


if __name__ == '__main__':
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
