// What the libvirt hook needs from a domain's XML: its name, whether it opts
// in to vhost-user-balloon (an element in our namespace under <metadata>),
// and the uid:gid libvirt runs its QEMU as (so QEMU may use our socket).
import { XMLParser } from 'fast-xml-parser';

/** The metadata namespace a domain uses to opt in. */
export const VUB_XML_NS = 'urn:vhost-user-balloon:1';

export interface BalloonOptIn {
  /** The vhost-user socket the domain's chardev uses; default by VM name. */
  socketPath?: string;
  /** A daemon config file (JSON, keys = daemon long options). */
  config?: string;
}

export interface DomainInfo {
  name: string;
  optIn: BalloonOptIn | null;
  /** From <seclabel model='dac'><label>+UID:+GID</label>, when libvirt set one. */
  qemuOwner: { uid: number; gid: number } | null;
}

type Node = Record<string, unknown>;

const parser = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '@', removeNSPrefix: false });

const asArray = (v: unknown): Node[] => (Array.isArray(v) ? v : v === undefined ? [] : [v]) as Node[];

function findOptIn(metadata: Node | undefined): BalloonOptIn | null {
  if (!metadata || typeof metadata !== 'object') return null;
  for (const [tag, value] of Object.entries(metadata)) {
    const [prefix, local] = tag.includes(':') ? tag.split(':') : ['', tag];
    if (local !== 'balloon') continue;
    for (const el of asArray(value)) {
      const ns = el[prefix ? `@xmlns:${prefix}` : '@xmlns'];
      if (ns !== VUB_XML_NS) continue;
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
  return { name, optIn: findOptIn(domain.metadata as Node | undefined), qemuOwner: dacOwner(domain.seclabel) };
}
