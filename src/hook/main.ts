#!/usr/bin/env node
// libvirt hook: `/etc/libvirt/hooks/qemu.d/vhost-user-balloon <domain> <op> <sub-op> <extra>`
// with the domain XML on stdin. For domains that opt in through
// <metadata><vub:balloon xmlns:vub="urn:vhost-user-balloon:1" .../></metadata>,
// `prepare` starts the VM's daemon and `release` stops it. Other domains and
// other operations: nothing, exit 0. A failure at `prepare` exits 1 with a
// message, which makes libvirt refuse to start the domain with that message.
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { vhostSocketPath, validVmName } from '../paths.js';
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
    await stopDaemon(dom.name);
    return 0;
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
  });
  process.stderr.write(`vhost-user-balloon: daemon for ${dom.name} running (pid ${pid})\n`);
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (err: unknown) => {
    process.stderr.write(`vhost-user-balloon hook: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
