// deploy/kubernetes/: every manifest is applied by the kustomization and passes
// kubernetes-validate --strict (offline, with the schemas it ships) on the Kubernetes
// versions below; and the manifests agree with the gateway they run: the config the
// ConfigMap holds, read by sluice's own loader with the environment the pod gives it (the
// image's ENV, then the Deployment's), decides the ports the probes and the Service use, the
// drain the preStop sleep and the termination grace must cover, and the paths that must be
// writable volumes under a read-only root.

import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import t from 'tap';
import { parse, parseAllDocuments } from 'yaml';
import { loadConfig, type Config } from '../../src/config/index.js';
import { readImage } from '../helpers/dockerfile.js';

const REPO = resolve(import.meta.dirname, '..', '..');
const DIR = join(REPO, 'deploy', 'kubernetes');
const VALIDATE = join(REPO, '.venv-tools', 'bin', 'kubernetes-validate');
// The oldest Kubernetes the manifests are meant for (the preStop `sleep` action is on by
// default from 1.30) and the newest the pinned kubernetes-validate knows.
const KUBERNETES_VERSIONS = ['1.31.0', '1.37.0'];

// Manifests are data of arbitrary shape: read loosely, asserted field by field.
type Manifest = Record<string, any>;

const kustomization = parse(readFileSync(join(DIR, 'kustomization.yaml'), 'utf8')) as { resources: string[] };
const files = kustomization.resources.map((f) => join(DIR, f));
const manifests: Manifest[] = files.flatMap((f) => parseAllDocuments(readFileSync(f, 'utf8')).map((d) => d.toJS() as Manifest));

function find(kind: string, name: string): Manifest {
  const m = manifests.find((x) => x.kind === kind && x.metadata?.name === name);
  if (m === undefined) throw new Error(`no ${kind} ${name} in ${kustomization.resources.join(', ')}`);
  return m;
}

/** True when every label of `selector` is on `labels`. */
function selects(selector: Record<string, string>, labels: Record<string, string>): boolean {
  return Object.entries(selector).every(([k, v]) => labels[k] === v);
}

t.test('the kustomization applies every manifest of the directory', async (t) => {
  const yamls = readdirSync(DIR).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml').sort();
  t.same([...kustomization.resources].sort(), yamls, 'resources: every other .yaml here');
});

for (const version of KUBERNETES_VERSIONS) {
  t.test(`kubernetes-validate --strict, Kubernetes ${version}`, async (t) => {
    const out = spawnSync(VALIDATE, ['--kubernetes-version', version, '--strict', '--quiet', ...files], { encoding: 'utf8', timeout: 30_000 });
    t.equal(out.error, undefined, `${VALIDATE} runs (bash scripts/setup-tools.sh installs it)`);
    t.equal(out.status, 0, `every resource validates\n${out.stdout}${out.stderr}`);
  });
}

t.test('the manifests agree with the image and the config they run', async (t) => {
  const image = readImage();
  const deployment = find('Deployment', 'sluice');
  const pod = deployment.spec.template.spec;
  const podLabels = deployment.spec.template.metadata.labels as Record<string, string>;
  t.equal(pod.containers.length, 1, 'one container');
  const container = pod.containers[0];
  const secret = find('Secret', 'sluice-secrets');

  // The pod's environment: the image's ENV, then the container's, with Kubernetes' $(NAME)
  // references to earlier entries; secrets as their placeholders.
  const env: Record<string, string> = { ...image.env };
  for (const e of container.env as Manifest[]) {
    const ref = e.valueFrom?.secretKeyRef;
    if (ref !== undefined) {
      t.equal(ref.name, secret.metadata.name, `${e.name} comes from the Secret`);
      if (ref.optional !== true) t.ok(ref.key in secret.stringData, `the Secret has ${ref.key}`);
      if (ref.key in secret.stringData) env[e.name] = secret.stringData[ref.key];
    } else {
      env[e.name] = (e.value as string).replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (whole, name: string) => env[name] ?? whole);
    }
  }

  t.equal(container.command, undefined, "no command: the image's ENTRYPOINT (tini, node with its flags) runs");
  t.equal(container.args[0], 'serve', 'the args are sluice\'s, as the image\'s CMD');
  const configPath = container.args[container.args.indexOf('--config') + 1] as string;
  const configMount = (container.volumeMounts as Manifest[]).find((m) => configPath.startsWith(`${m.mountPath}/`));
  const configVolume = (pod.volumes as Manifest[]).find((v) => v.name === configMount?.name);
  const configMap = find('ConfigMap', configVolume?.configMap?.name);
  const configText = configMap.data[configPath.slice(configMount!.mountPath.length + 1)] as string | undefined;
  t.type(configText, 'string', `--config ${configPath} is a key of ConfigMap ${configMap.metadata.name}`);

  const dir = mkdtempSync(join(tmpdir(), 'sluice-k8s-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'config.yaml'), configText!);
  const config: Config = loadConfig(join(dir, 'config.yaml'), env);

  // Ports and probes.
  const ports = new Map((container.ports as Manifest[]).map((p) => [p.name as string, p.containerPort as number]));
  const portOf = (p: string | number): number | undefined => (typeof p === 'number' ? p : ports.get(p));
  t.equal(ports.get('http'), config.listen.port, 'containerPort http is the data plane\'s');
  t.equal(ports.get('admin'), config.admin.port, 'containerPort admin is the admin API\'s');
  t.equal(config.listen.host, '0.0.0.0', 'the data plane listens on the pod\'s address');
  t.not(config.admin.token, null, 'an admin token is set, so the admin API listens on the pod\'s address too (the probes need it)');
  t.equal(config.admin.host, '0.0.0.0', 'on every interface');
  for (const [probe, path] of [['startupProbe', '/healthz'], ['livenessProbe', '/healthz'], ['readinessProbe', '/readyz']] as const) {
    t.equal(container[probe]?.httpGet?.path, path, `${probe} asks ${path}`);
    t.equal(portOf(container[probe]?.httpGet?.port), config.admin.port, `${probe} on the admin port`);
    // A probe in plain HTTP to a TLS admin port fails: the pod never gets ready.
    t.equal(container[probe]?.httpGet?.scheme ?? 'HTTP', config.admin.tls === undefined ? 'HTTP' : 'HTTPS', `${probe} in the admin port's scheme`);
  }

  // The drain: preStop sleep, then sluice's drain delay and grace, inside the kill deadline.
  const preStopMs = container.lifecycle.preStop.sleep.seconds * 1000;
  const { drain_delay_ms: drainMs, grace_ms: graceMs } = config.shutdown;
  t.equal(preStopMs, drainMs, 'the preStop sleep matches shutdown.drain_delay_ms');
  t.ok(pod.terminationGracePeriodSeconds * 1000 >= preStopMs + drainMs + graceMs,
    `terminationGracePeriodSeconds (${pod.terminationGracePeriodSeconds} s) covers preStop + drain_delay_ms + grace_ms (${(preStopMs + drainMs + graceMs) / 1000} s)`);

  // Non-root, read-only, no privilege; what sluice writes is on volumes.
  t.equal(pod.securityContext.runAsNonRoot, true, 'runAsNonRoot');
  t.equal(pod.securityContext.runAsUser, image.user.uid, 'as the image\'s USER');
  t.equal(container.securityContext.readOnlyRootFilesystem, true, 'readOnlyRootFilesystem');
  t.equal(container.securityContext.allowPrivilegeEscalation, false, 'allowPrivilegeEscalation false');
  t.same(container.securityContext.capabilities.drop, ['ALL'], 'capabilities drop ALL');
  for (const path of [config.state_dir, '/tmp']) {
    const mount = (container.volumeMounts as Manifest[]).find((m) => m.mountPath === path);
    const volume = (pod.volumes as Manifest[]).find((v) => v.name === mount?.name);
    t.ok(mount?.readOnly !== true && (volume?.emptyDir !== undefined || volume?.persistentVolumeClaim !== undefined), `${path} is a writable volume`);
  }

  // Resources, autoscaling, disruptions.
  for (const kind of ['requests', 'limits']) for (const r of ['cpu', 'memory']) t.ok(container.resources?.[kind]?.[r], `resources.${kind}.${r}`);
  t.equal(config.workers, Number(container.resources.limits.cpu), 'one worker thread per core of the CPU limit');
  const hpa = find('HorizontalPodAutoscaler', 'sluice');
  t.equal(hpa.apiVersion, 'autoscaling/v2', 'autoscaling/v2');
  t.same(hpa.spec.scaleTargetRef, { apiVersion: 'apps/v1', kind: 'Deployment', name: deployment.metadata.name }, 'the HPA scales the Deployment');
  t.equal(hpa.spec.metrics[0]?.resource?.name, 'cpu', 'on CPU (relative to the request)');
  t.ok(hpa.spec.minReplicas >= 2, 'several instances');
  t.equal(deployment.spec.replicas, undefined, 'the Deployment leaves its replica count to the HPA');
  t.ok(selects(find('PodDisruptionBudget', 'sluice').spec.selector.matchLabels, podLabels), 'the PodDisruptionBudget selects the gateway pods');

  // The Service reaches both ports.
  const service = find('Service', 'sluice');
  t.ok(selects(service.spec.selector, podLabels), 'the Service selects the gateway pods');
  t.same((service.spec.ports as Manifest[]).map((p) => portOf(p.targetPort)).sort(), [config.listen.port, config.admin.port].sort(), 'the Service targets the data plane and the admin API');

  // Shared state: the Redis URL names the Redis Service, which selects the Redis pods.
  t.not(config.redis.url, null, 'redis.url is set (SLUICE_REDIS_URL)');
  const redisUrl = new URL(config.redis.url!);
  const redisService = find('Service', redisUrl.hostname);
  t.equal(redisService.spec.ports[0].port, Number(redisUrl.port), `${redisUrl.hostname}:${redisUrl.port} is the Redis Service`);
  t.ok(selects(redisService.spec.selector, find('Deployment', redisUrl.hostname).spec.template.metadata.labels), 'which selects the Redis pods');
  t.equal(decodeURIComponent(redisUrl.password), secret.stringData.REDIS_PASSWORD, 'with the password Redis is given');
});
