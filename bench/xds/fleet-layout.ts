import { readFileSync } from 'node:fs';
import { openFileLimit, RESERVED_FILES } from '../../src/limits/open-files.js';

/**
 * How the simulated fleet is spread so that no process and no source address hits a wall
 * (docs/CAPACITY.md): each client is one open file in its load-generator process, and each
 * connection from one source address to the target takes one of that address's ephemeral ports.
 */
export interface FleetLayout {
  /** Load-generator processes. */
  processes: number;
  /** Clients that share one source address. */
  clientsPerAddress: number;
  /** Source addresses used (127.0.1.1 and on; the whole of 127.0.0.0/8 is this host's). */
  addresses: number;
}

/** The ephemeral port range (net.ipv4.ip_local_port_range), or Linux's default where it cannot be read. */
export function ephemeralPorts(read: () => string = () => readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8')): number {
  try {
    const [low, high] = read().trim().split(/\s+/).map(Number);
    if (Number.isInteger(low) && Number.isInteger(high) && high! > low!) return high! - low! + 1;
  } catch {
    // Not Linux: the default below.
  }
  return 60999 - 32768 + 1;
}

/**
 * Processes: at least `minimum`, and enough that none holds more clients than its open-file limit
 * allows; addresses: half of the port range each, since a reconnect storm's closed connections
 * keep their ports in TIME_WAIT while the new ones take others.
 */
export function planFleet(clients: number, overrides: { processes?: number | undefined; clientsPerAddress?: number | undefined; minimum?: number } = {},
  limits: { openFiles: number; ports: number } = { openFiles: openFileLimit(), ports: ephemeralPorts() }): FleetLayout {
  const perProcess = Math.max(1, limits.openFiles - RESERVED_FILES);
  const processes = overrides.processes ?? Math.max(overrides.minimum ?? 2, Math.ceil(clients / perProcess));
  const clientsPerAddress = overrides.clientsPerAddress ?? Math.max(1, Math.floor(limits.ports / 2));
  return { processes, clientsPerAddress, addresses: Math.ceil(clients / clientsPerAddress) };
}

/** The source address of client `index`: 127.0.1.1, … (127.0.0.1 is left to the servers' own connections). */
export function sourceAddress(index: number, clientsPerAddress: number): string {
  const block = Math.floor(index / clientsPerAddress);
  return `127.${Math.floor(block / 65_024)}.${1 + Math.floor((block % 65_024) / 254)}.${1 + (block % 254)}`;
}
