// What the libvirt hook needs from a domain's XML: its name, whether it opts
// in to vhost-user-balloon (an element in our namespace under <metadata>),
// the uid:gid libvirt runs its QEMU as (so QEMU may use our socket), and the
// socket its <qemu:commandline> chardev connects the balloon device to (so a
// domain whose chardev and metadata disagree is refused with both paths).
import { XMLParser } from 'fast-xml-parser';

/** The metadata namespace a domain uses to opt in. */
export const VUB_XML_NS = 'urn:vhost-user-balloon:1';
/** libvirt's namespace for <qemu:commandline>. */
export const QEMU_XML_NS = 'http://libvirt.org/schemas/domain/qemu/1.0';
/** The -device drivers of our QEMU patch. */
export const BALLOON_DRIVERS = ['vhost-user-balloon', 'vhost-user-balloon-pci', 'vhost-user-balloon-device'];

export interface BalloonOptIn {
  /** The vhost-user socket the domain's chardev uses; default by VM name. */
  socketPath?: string;
  /** A daemon config file (JSON, keys = daemon long options). */
  config?: string;
}

/** Our device on the domain's QEMU command line, and where its chardev connects. */
export interface BalloonDevice {
  chardev: string | null;
  /** path= of that -chardev socket; null when the chardev is not on the command line. */
  socketPath: string | null;
}

export interface DomainInfo {
  name: string;
  optIn: BalloonOptIn | null;
  /** From <seclabel model='dac'><label>+UID:+GID</label>, when libvirt set one. */
  qemuOwner: { uid: number; gid: number } | null;
  /** Null when <qemu:commandline> has no vhost-user-balloon -device. */
  device: BalloonDevice | null;
}

type Node = Record<string, unknown>;

const parser = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '@', removeNSPrefix: false });

const asArray = (v: unknown): Node[] => (Array.isArray(v) ? v : v === undefined ? [] : [v]) as Node[];

const splitTag = (tag: string): [string, string] => (tag.includes(':') ? tag.split(':', 2) as [string, string] : ['', tag]);

/** The namespace an element's prefix stands for: declared on the element itself or on <domain>. */
function nsOf(el: Node, prefix: string, domain: Node): unknown {
  const key = prefix ? `@xmlns:${prefix}` : '@xmlns';
  return el[key] ?? domain[key];
}

function findOptIn(metadata: Node | undefined, domain: Node): BalloonOptIn | null {
  if (!metadata || typeof metadata !== 'object') return null;
  for (const [tag, value] of Object.entries(metadata)) {
    const [prefix, local] = splitTag(tag);
    if (local !== 'balloon') continue;
    for (const el of asArray(value)) {
      if (nsOf(el, prefix, domain) !== VUB_XML_NS) continue;
      const socketPath = el['@socket'];
      const config = el['@config'];
      return {
        ...(typeof socketPath === 'string' && socketPath ? { socketPath } : {}),
        ...(typeof config === 'string' && config ? { config } : {}),
      };
    }
  }
  return null;
}

function dacOwner(seclabels: unknown): { uid: number; gid: number } | null {
  for (const s of asArray(seclabels)) {
    if (s['@model'] !== 'dac') continue;
    const m = /^\+?(\d+):\+?(\d+)$/.exec(String(s.label ?? '').trim());
    if (m) return { uid: Number(m[1]), gid: Number(m[2]) };
  }
  return null;
}

/** QEMU's "-opt" syntax: comma-separated, ",," a literal comma; the first bare word is the implied key's value. */
export function parseQemuOpts(text: string, implied: string): Record<string, string> {
  const out: Record<string, string> = {};
  const parts: string[] = [];
  let cur = '';
  for (let i = 0; i < text.length; i++) {
    if (text[i] === ',') {
      if (text[i + 1] === ',') {
        cur += ',';
        i++;
        continue;
      }
      parts.push(cur);
      cur = '';
    } else {
      cur += text[i];
    }
  }
  parts.push(cur);
  parts.forEach((p, i) => {
    const eq = p.indexOf('=');
    if (eq < 0) {
      if (i === 0) out[implied] = p;
      else out[p] = 'on';
    } else {
      out[p.slice(0, eq)] = p.slice(eq + 1);
    }
  });
  return out;
}

/** -device in JSON or in the opts syntax: driver and properties. */
function deviceProps(text: string): Record<string, unknown> {
  if (text.trimStart().startsWith('{')) {
    try {
      const v = JSON.parse(text) as unknown;
      return typeof v === 'object' && v !== null && !Array.isArray(v) ? v as Record<string, unknown> : {};
    } catch {
      return {};
    }
  }
  return parseQemuOpts(text, 'driver');
}

/** Our -device and its -chardev socket among the <qemu:commandline> arguments. */
export function findBalloonDevice(args: string[]): BalloonDevice | null {
  const chardevs = new Map<string, Record<string, string>>();
  let device: Record<string, unknown> | null = null;
  for (let i = 0; i + 1 < args.length; i++) {
    const [flag, value] = [args[i]!.replace(/^--/, '-'), args[i + 1]!];
    if (flag === '-chardev') {
      const c = parseQemuOpts(value, 'backend');
      if (c.id) chardevs.set(c.id, c);
    } else if (flag === '-device' && !device) {
      const d = deviceProps(value);
      if (typeof d.driver === 'string' && BALLOON_DRIVERS.includes(d.driver)) device = d;
    }
  }
  if (!device) return null;
  const chardev = typeof device.chardev === 'string' ? device.chardev : null;
  const c = chardev ? chardevs.get(chardev) : undefined;
  return { chardev, socketPath: c && c.backend === 'socket' && c.path ? c.path : null };
}

function commandLineArgs(domain: Node): string[] {
  const args: string[] = [];
  for (const [tag, value] of Object.entries(domain)) {
    const [prefix, local] = splitTag(tag);
    if (local !== 'commandline') continue;
    for (const el of asArray(value)) {
      if (nsOf(el, prefix, domain) !== QEMU_XML_NS) continue;
      for (const [t, v] of Object.entries(el)) {
        if (splitTag(t)[1] !== 'arg') continue;
        for (const a of asArray(v)) if (typeof a['@value'] === 'string') args.push(a['@value']);
      }
    }
  }
  return args;
}

/** Throws with a readable message when the text is not a libvirt domain. */
export function parseDomain(xml: string): DomainInfo {
  let doc: Node;
  try {
    doc = parser.parse(xml) as Node;
  } catch (err) {
    throw new Error(`domain XML does not parse: ${(err as Error).message}`);
  }
  const domain = doc.domain as Node | undefined;
  const name = domain?.name;
  if (!domain || typeof name !== 'string' || !name) throw new Error('not a libvirt domain XML (no <domain><name>)');
  return {
    name,
    optIn: findOptIn(domain.metadata as Node | undefined, domain),
    qemuOwner: dacOwner(domain.seclabel),
    device: findBalloonDevice(commandLineArgs(domain)),
  };
}
