// Test helper: reads the settings the server scripts export (scripts/servers/*.sh) and decides skip vs fail.
/**
 * The named environment variables, or undefined when one is missing. Under CI (CI=true) a missing server
 * is a failure, not a skip: `missingReason` says what to report.
 */
export function serverEnv<K extends string>(
  names: readonly K[],
): { env: Record<K, string> } | { missing: string } {
  const missing = names.filter((n) => !process.env[n]);
  if (missing.length === 0)
    return { env: Object.fromEntries(names.map((n) => [n, process.env[n] as string])) as Record<K, string> };
  return {
    missing: `${missing.join(', ')} not set: start the servers with scripts/servers/*.sh start and source $ARBOR_SERVERS_ENV (npm test does both)`,
  };
}

export const inCI = process.env.CI === 'true';
