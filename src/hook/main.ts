#!/usr/bin/env node
// libvirt hook: `/etc/libvirt/hooks/qemu.d/vhost-user-balloon <domain> <op> <sub-op> <extra>`
// with the domain XML on stdin. For domains that opt in through
// <metadata><vub:balloon xmlns:vub="urn:vhost-user-balloon:1" .../></metadata>,
// `prepare` starts the VM's daemon and `release` stops it. Other domains and
// other operations: nothing, exit 0. A failure at `prepare` exits 1 with a
// message, which makes libvirt refuse to start the domain with that message.
// The daemon runs as the system user vhost-user-balloon (VUB_DAEMON_USER
// overrides), which is given the cgroup files and run directory it needs.
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { lookupUser } from '../host/privileges.js';
import { DAEMON_USER, vhostSocketPath, validVmName } from '../paths.js';
import { parseDomain } from './domain.js';
import { startDaemon, stopDaemon } from './daemon-control.js';
import { qemuIdentity } from './qemu-user.js';

const CONFIG_DIR = process.env.VUB_CONFIG_DIR ?? '/etc/vhost-user-balloon';

async function main(argv: string[]): Promise<number> {
  const [domainArg, op] = argv;
  if (!domainArg || !op) {
    process.stderr.write('usage: vhost-user-balloon-hook <domain> <operation> [sub-op] [extra] < domain.xml\n'
      + '(libvirt runs this as /etc/libvirt/hooks/qemu.d/vhost-user-balloon; see examples/libvirt/)\n');
    return 2;
  }
  if (op !== 'prepare' && op !== 'release') return 0;
  const dom = parseDomain(readFileSync(0, 'utf8'));
  if (!dom.optIn) return 0;
  if (!validVmName(dom.name)) throw new Error(`domain name "${dom.name}" cannot name a daemon (letters, digits, ".", "_", "+", "-")`);
  if (op === 'release') {
    const r = await stopDaemon(dom.name);
    if (r.message) process.stderr.write(`vhost-user-balloon: daemon for ${dom.name}: ${r.message}\n`);
    return 0;
  }
  // The daemon runs unprivileged (docs/privileges.md); the installer creates its user.
  const userName = process.env.VUB_DAEMON_USER ?? DAEMON_USER;
  const user = lookupUser(userName);
  if (!user) {
    throw new Error(`the daemon's user ${userName} does not exist: create it as root with examples/install-user.sh `
      + `(useradd --system --user-group --no-create-home --shell /usr/sbin/nologin ${userName})`);
  }
  const defaultConfig = join(CONFIG_DIR, `${dom.name}.json`);
  const config = dom.optIn.config ?? (existsSync(defaultConfig) ? defaultConfig : undefined);
  if (config && !existsSync(config)) throw new Error(`config file ${config} named in the domain's metadata does not exist`);
  const pid = await startDaemon({
    vm: dom.name,
    socketPath: dom.optIn.socketPath ?? vhostSocketPath(dom.name),
    ...(config ? { config } : {}),
    // QEMU must be able to connect: the socket belongs to the user libvirt runs it as.
    owner: dom.qemuOwner ?? qemuIdentity(),
    daemonJs: resolve(fileURLToPath(import.meta.url), '..', '..', 'main.js'),
    user,
  });
  process.stderr.write(`vhost-user-balloon: daemon for ${dom.name} running as ${user.name} (pid ${pid})\n`);
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (err: unknown) => {
    process.stderr.write(`vhost-user-balloon hook: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
