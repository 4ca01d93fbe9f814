// Imported before oidc-provider (ESM evaluates imports in order), so that the
// library's console output is under our control:
//  * stdout carries exactly one line, the ready line, written with
//    process.stdout.write by server.mjs; everything console.log/info would have
//    printed goes to stderr instead;
//  * oidc-provider's development notices ("you SHOULD change ...", the
//    devInteractions and unsupported-runtime warnings) are dropped unless
//    TW_IDP_VERBOSE=1 is set.

const verbose = process.env.TW_IDP_VERBOSE === '1';

const NOISE = [
  /^oidc-provider NOTICE:/,
  /^oidc-provider WARNING: Unsupported runtime/,
  /^oidc-provider WARNING: a quick start development-only feature devInteractions/,
  /^oidc-provider WARNING: already parsed request body detected/,
  /^oidc-provider WARNING: you've configured your own interactions.url but devInteractions/,
];

function isNoise(args) {
  if (verbose) return false;
  // eslint-disable-next-line no-control-regex
  const first = typeof args[0] === 'string' ? args[0].replace(/\x1b\[[0-9;]*m/g, '') : '';
  return NOISE.some((re) => re.test(first));
}

const toStderr = console.error.bind(console);

console.log = (...args) => { if (!isNoise(args)) toStderr(...args); };
console.info = console.log;
console.debug = console.log;
console.warn = (...args) => { if (!isNoise(args)) toStderr(...args); };

export const VERBOSE = verbose;
