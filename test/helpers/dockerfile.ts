// What the Dockerfile says its image runs, read from the file itself so that the tests in
// test/deploy/ follow it: the final stage's ENV, USER, WORKDIR, RUN, VOLUME, COPY,
// HEALTHCHECK, ENTRYPOINT and CMD. Only the forms this project writes are understood;
// anything else throws, so that a change of form fails a test instead of being misread.

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const DOCKERFILE = fileURLToPath(new URL('../../Dockerfile', import.meta.url));

interface Instruction {
  readonly keyword: string;
  readonly args: string;
  /** 1-based line where the instruction starts. */
  readonly line: number;
}

interface Stage {
  readonly name: string | null;
  readonly instructions: Instruction[];
}

export interface Copy {
  /** The stage the sources come from, or null for the build context. */
  readonly from: string | null;
  readonly sources: string[];
  readonly dest: string;
}

export interface Image {
  readonly workdir: string;
  readonly env: Readonly<Record<string, string>>;
  readonly user: { readonly uid: number; readonly gid: number };
  readonly volumes: readonly string[];
  /** RUN lines, continuation lines joined. */
  readonly runs: readonly string[];
  readonly copies: readonly Copy[];
  /** HEALTHCHECK's CMD, exec form. */
  readonly healthcheck: readonly string[];
  readonly entrypoint: readonly string[];
  readonly cmd: readonly string[];
  /** The WORKDIR of each named stage, to place what a COPY --from takes. */
  readonly stageWorkdirs: ReadonlyMap<string, string>;
}

/** Instructions by stage; comment lines dropped, continuation lines joined. */
function parseDockerfile(text: string): Stage[] {
  const stages: Stage[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    if (/^\s*(#|$)/.test(lines[i]!)) continue;
    const start = i + 1;
    let joined = lines[i]!.trimEnd();
    while (joined.endsWith('\\') && i + 1 < lines.length) {
      i++;
      // Docker drops comment lines inside a continued instruction too.
      while (i + 1 < lines.length && /^\s*#/.test(lines[i]!)) i++;
      joined = `${joined.slice(0, -1)} ${lines[i]!.trim()}`;
    }
    const m = /^\s*([A-Za-z]+)\s+(.*)$/.exec(joined);
    if (m === null) throw new Error(`Dockerfile:${start}: cannot read ${JSON.stringify(joined)}`);
    const ins: Instruction = { keyword: m[1]!.toUpperCase(), args: m[2]!.trim(), line: start };
    if (ins.keyword === 'FROM') {
      const from = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(ins.args);
      if (from === null) throw new Error(`Dockerfile:${start}: cannot read FROM ${ins.args}`);
      stages.push({ name: from[2] ?? null, instructions: [ins] });
    } else {
      if (stages.length === 0) throw new Error(`Dockerfile:${start}: ${ins.keyword} before FROM`);
      stages[stages.length - 1]!.instructions.push(ins);
    }
  }
  return stages;
}

/** The image the last stage makes. */
function imageOf(stages: Stage[]): Image {
  const final = stages[stages.length - 1];
  if (final === undefined) throw new Error('Dockerfile: no FROM');
  const stageWorkdirs = new Map<string, string>();
  for (const s of stages) {
    const wd = s.instructions.filter((i) => i.keyword === 'WORKDIR').pop();
    if (s.name !== null && wd !== undefined) stageWorkdirs.set(s.name, wd.args);
  }
  let workdir = '/';
  const env: Record<string, string> = {};
  let user: Image['user'] | undefined;
  const volumes: string[] = [];
  const runs: string[] = [];
  const copies: Copy[] = [];
  let healthcheck: string[] | undefined;
  let entrypoint: string[] | undefined;
  let cmd: string[] | undefined;
  for (const ins of final.instructions) {
    const where = `Dockerfile:${ins.line}: ${ins.keyword}`;
    switch (ins.keyword) {
      case 'WORKDIR':
        workdir = ins.args;
        break;
      case 'ENV':
        for (const pair of ins.args.split(/\s+/)) {
          const kv = /^([A-Za-z_][A-Za-z0-9_]*)=([^"'$\\]*)$/.exec(pair);
          if (kv === null) throw new Error(`${where}: only unquoted KEY=value pairs without $ are understood, not ${pair}`);
          env[kv[1]!] = kv[2]!;
        }
        break;
      case 'USER': {
        const ids = /^(\d+):(\d+)$/.exec(ins.args);
        if (ids === null) throw new Error(`${where}: expected numeric uid:gid, not ${ins.args}`);
        user = { uid: Number(ids[1]), gid: Number(ids[2]) };
        break;
      }
      case 'RUN':
        runs.push(ins.args);
        break;
      case 'VOLUME':
        volumes.push(...(ins.args.startsWith('[') ? execForm(ins.args, where) : ins.args.split(/\s+/)));
        break;
      case 'COPY': {
        const words = ins.args.split(/\s+/);
        let from: string | null = null;
        while (words[0]?.startsWith('--')) {
          const flag = words.shift()!;
          if (flag.startsWith('--from=')) from = flag.slice('--from='.length);
          else throw new Error(`${where}: flag ${flag} not understood`);
        }
        if (words.length < 2) throw new Error(`${where}: expected sources and a destination`);
        copies.push({ from, sources: words.slice(0, -1), dest: words[words.length - 1]! });
        break;
      }
      case 'HEALTHCHECK': {
        const m = /^(?:--\S+\s+)*CMD\s+(\[.*\])$/.exec(ins.args);
        if (m === null) throw new Error(`${where}: expected [options] CMD [exec form]`);
        healthcheck = execForm(m[1]!, where);
        break;
      }
      case 'ENTRYPOINT':
        entrypoint = execForm(ins.args, where);
        break;
      case 'CMD':
        cmd = execForm(ins.args, where);
        break;
    }
  }
  if (user === undefined || healthcheck === undefined || entrypoint === undefined || cmd === undefined) {
    throw new Error('Dockerfile: the final stage needs USER, HEALTHCHECK, ENTRYPOINT and CMD');
  }
  return { workdir, env, user, volumes, runs, copies, healthcheck, entrypoint, cmd, stageWorkdirs };
}

export function readImage(file = DOCKERFILE): Image {
  return imageOf(parseDockerfile(readFileSync(file, 'utf8')));
}

/** The exec form (a JSON array of strings): the shell form would put /bin/sh between tini and node. */
function execForm(args: string, where: string): string[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(args);
  } catch {
    throw new Error(`${where}: not in exec form (a JSON array): ${args}`);
  }
  if (!Array.isArray(parsed) || !parsed.every((a) => typeof a === 'string')) throw new Error(`${where}: not a JSON array of strings`);
  return parsed as string[];
}
