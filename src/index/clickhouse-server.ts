/**
 * Throwaway ClickHouse servers on loopback, for tests and benchmarks: each a temporary folder with a
 * minimal config (HTTP and native TCP ports chosen free at random), started as a child process and
 * stopped by its pid. `startLocalClickHouseCluster` starts several, each configured with the same
 * `remote_servers` cluster (one shard per server, addressed by its TCP port), which is what a
 * `Distributed` table over them needs. Works with Debian's clickhouse-server 18.16
 * (`clickhouse-server`) and with the single-binary builds (`clickhouse server`).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, openSync, closeSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ProbsemError } from '../core/errors.js';

export interface LocalClickHouse {
  readonly httpPort: number;
  /** The native protocol's port, what other servers' Distributed tables connect to. */
  readonly tcpPort: number;
  readonly pid: number;
  readonly dir: string;
  /** clickhouse://127.0.0.1:<port>/<dbTable> */
  url(dbTable: string): string;
  /** Stops the server (SIGTERM, then SIGKILL after 10 s) and removes its folder. Safe to call twice. */
  stop(): Promise<void>;
}

/**
 * The command that starts a server, or null when no ClickHouse binary is installed.
 * PROBSEM_CLICKHOUSE_SERVER overrides the search: a command (e.g. "/opt/ch/clickhouse server"), or
 * "none" to act as if none were installed.
 */
export function findClickHouseServer(): string[] | null {
  const env = process.env.PROBSEM_CLICKHOUSE_SERVER;
  if (env !== undefined && env.trim() !== '') return env.trim() === 'none' ? null : env.trim().split(/\s+/);
  const which = (name: string): string | null => {
    const r = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' });
    if (r.status === 0 && r.stdout.trim()) return r.stdout.trim();
    for (const dir of ['/usr/sbin', '/usr/bin', '/usr/local/bin']) if (existsSync(join(dir, name))) return join(dir, name);
    return null;
  };
  const server = which('clickhouse-server');
  if (server) return [server];
  const single = which('clickhouse');
  return single ? [single, 'server'] : null;
}

function xmlName(v: string): string {
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(v)) throw new ProbsemError(`a ClickHouse user name must be letters, digits and _, got ${JSON.stringify(v)}`, 'BAD_OPTION');
  return v;
}

function xmlText(v: string): string {
  return v.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface LocalClickHouseOptions {
  timeoutMs?: number;
  command?: string[];
  /** Users besides `default` (which has no password), e.g. to test credentials. */
  users?: { name: string; password: string }[];
}

export interface LocalClickHouseCluster {
  /** The cluster's name in every server's remote_servers. */
  readonly name: string;
  /** One per shard, in shard order. */
  readonly servers: LocalClickHouse[];
  /** `host:httpPort` of every shard, what ClickHouseStore's `shards` option takes. */
  readonly shardHosts: string[];
  /** Stops every server (by pid) and removes their folders. */
  stop(): Promise<void>;
}

/**
 * Starts `shards` servers (default 2) that all know the cluster `name` (default "probsem"): one
 * shard per server, one replica each, on 127.0.0.1. Any server can then host a Distributed table.
 */
export async function startLocalClickHouseCluster(opts: LocalClickHouseOptions & { shards?: number; name?: string } = {}): Promise<LocalClickHouseCluster> {
  const n = opts.shards ?? 2;
  if (!Number.isInteger(n) || n < 1) throw new ProbsemError(`shards must be a positive integer, got ${n}`, 'BAD_OPTION');
  const name = opts.name ?? 'probsem';
  const ports = await freePorts(2 * n);
  const tcp = ports.slice(n);
  const remote = `<remote_servers><${name}>${tcp.map((p) => `<shard><replica><host>127.0.0.1</host><port>${p}</port></replica></shard>`).join('')}</${name}></remote_servers>`;
  const servers: LocalClickHouse[] = [];
  try {
    // One after another: two servers starting at once on two cores each take twice as long anyway.
    for (let i = 0; i < n; i++) servers.push(await startServer(opts, ports[i], tcp[i], remote));
  } catch (err) {
    for (const s of servers) await s.stop();
    throw err;
  }
  return {
    name,
    servers,
    shardHosts: servers.map((s) => `127.0.0.1:${s.httpPort}`),
    stop: async () => {
      for (const s of servers) await s.stop();
    },
  };
}

/** Distinct free ports (all bound at once, so none is handed out twice). */
async function freePorts(n: number): Promise<number[]> {
  const held = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
          const s = createServer();
          s.once('error', reject);
          s.listen(0, '127.0.0.1', () => resolve(s));
        }),
    ),
  );
  const ports = held.map((s) => (s.address() as { port: number }).port);
  await Promise.all(held.map((s) => new Promise<void>((r) => s.close(() => r()))));
  return ports;
}

/** Starts a server and waits until its HTTP interface answers (at most `timeoutMs`, default 60 s). */
export async function startLocalClickHouse(opts: LocalClickHouseOptions = {}): Promise<LocalClickHouse> {
  const [http, tcp] = await freePorts(2);
  return startServer(opts, http, tcp, '');
}

async function startServer(opts: LocalClickHouseOptions, httpPort: number, tcpPort: number, remoteServers: string): Promise<LocalClickHouse> {
  const command = opts.command ?? findClickHouseServer();
  if (!command) throw new ProbsemError('no ClickHouse server binary found (Debian: apt-get install clickhouse-server)', 'NOT_FOUND');
  const dir = mkdtempSync(join(tmpdir(), 'probsem-clickhouse-'));
  for (const sub of ['data', 'tmp', 'user_files', 'format_schemas']) mkdirSync(join(dir, sub));
  let child: ChildProcess | null = null;
  let exited = false;
  // If this process ends without calling stop (a crash), the server goes with it.
  const killOnExit = () => {
    try {
      if (child?.pid !== undefined && !exited) process.kill(child.pid, 'SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    } catch {
      /* gone */
    }
  };
  process.once('exit', killOnExit);
  const stop = async () => {
    process.removeListener('exit', killOnExit);
    if (child && !exited && child.pid !== undefined) {
      const done = new Promise<void>((r) => child!.once('exit', () => r()));
      try {
        process.kill(child.pid, 'SIGTERM');
      } catch {
        /* already gone */
      }
      const timer = setTimeout(() => {
        try {
          if (!exited) process.kill(child!.pid!, 'SIGKILL');
        } catch {
          /* gone */
        }
      }, 10_000);
      await done;
      clearTimeout(timer);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    writeFileSync(
      join(dir, 'config.xml'),
      `<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><console>1</console></logger>
  <http_port>${httpPort}</http_port>
  <tcp_port>${tcpPort}</tcp_port>
  ${remoteServers}
  <listen_host>127.0.0.1</listen_host>
  <path>${dir}/data/</path>
  <tmp_path>${dir}/tmp/</tmp_path>
  <user_files_path>${dir}/user_files/</user_files_path>
  <format_schema_path>${dir}/format_schemas/</format_schema_path>
  <mark_cache_size>268435456</mark_cache_size>
  <users_config>users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mlock_executable>false</mlock_executable>
</yandex>
`,
    );
    writeFileSync(
      join(dir, 'users.xml'),
      `<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>8000000000</max_memory_usage></default></profiles>
  <users><default><password></password><networks><ip>127.0.0.1</ip><ip>::1</ip></networks><profile>default</profile><quota>default</quota></default>${(opts.users ?? [])
    .map((u) => `<${xmlName(u.name)}><password>${xmlText(u.password)}</password><networks><ip>127.0.0.1</ip><ip>::1</ip></networks><profile>default</profile><quota>default</quota></${u.name}>`)
    .join('')}</users>
  <quotas><default></default></quotas>
</yandex>
`,
    );
    const log = openSync(join(dir, 'server.log'), 'w');
    child = spawn(command[0], [...command.slice(1), `--config-file=${join(dir, 'config.xml')}`], { cwd: dir, stdio: ['ignore', log, log] });
    closeSync(log);
    child.once('exit', () => (exited = true));
    child.once('error', () => (exited = true));
    const deadline = Date.now() + (opts.timeoutMs ?? 60_000);
    for (;;) {
      if (exited) throw new ProbsemError(`clickhouse server exited during start-up: ${readFileSync(join(dir, 'server.log'), 'utf8').slice(-2000)}`, 'UNREACHABLE');
      try {
        const r = await fetch(`http://127.0.0.1:${httpPort}/ping`);
        if (r.ok) break;
      } catch {
        /* not listening yet */
      }
      if (Date.now() > deadline) throw new ProbsemError(`clickhouse server did not answer on port ${httpPort} within ${opts.timeoutMs ?? 60_000} ms`, 'UNREACHABLE');
      await sleep(100);
    }
    const pid = child.pid!;
    return { httpPort, tcpPort, pid, dir, url: (dbTable) => `clickhouse://127.0.0.1:${httpPort}/${dbTable}`, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
