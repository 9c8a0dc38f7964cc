import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { benchAttackSchema, benchCsrSchema, benchXdsSchema, serveSchema, simSchema, tokenSchema } from '../../src/config/schema.js';

const cli = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/cli/main.js');
const run = (...args: string[]) => execFileSync(process.execPath, [cli, ...args], { encoding: 'utf8' });
const kebab = (key: string) => key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

const commands = [
  [['serve'], serveSchema], [['sim-istiod'], simSchema], [['token'], tokenSchema],
  [['bench'], benchXdsSchema], [['bench', 'csr'], benchCsrSchema], [['bench', 'attack'], benchAttackSchema],
] as const;

for (const [command, schema] of commands) {
  test(`meshrelay ${command.join(' ')} --help lists every flag the command accepts, with its default`, (t) => {
    const help = run(...command, '--help');
    for (const key of Object.keys(schema.shape)) t.regex(help, new RegExp(`--${kebab(key)}\\b`), `--${kebab(key)}`);
    t.notRegex(help, /unknown flag/);
  });
}

test('serve --help shows the defaults the schema gives', (t) => {
  const help = run('serve', '--help');
  t.regex(help, /--max-groups <number>\s+default 10000/);
  t.regex(help, /--upstream-protocol <delta\|sotw>\s+default delta/);
});

test('meshrelay help names every command, and each one\'s --help', (t) => {
  const help = run('help');
  for (const command of ['serve', 'sim-istiod', 'token', 'bench [xds]', 'bench csr', 'bench attack', 'COMMAND --help']) t.true(help.includes(`meshrelay ${command}`), command);
});
