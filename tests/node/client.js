// A paykit client in Node.js, built only from proto/paykit/v1/payment.proto: the proto is the contract.
//
//   node tests/node/client.js --gateway 127.0.0.1:50050 --ca ca.pem --cert paykit-client.pem \
//       --key paykit-client.key --proto-root proto --googleapis <dir with google/rpc/*.proto> --user carol
//
// Over mutual TLS with the dev PKI it registers a user, signs in, pays, retries the payment with
// the same idempotency key, reads the balance, and makes a refused payment to read the error's
// details (the grpc-status-details-bin trailer: a google.rpc.Status holding ErrorInfo and
// BadRequest). It prints one JSON object with what it saw; tests/test_node_client.py checks it.
'use strict';

const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
// protobufjs is what proto-loader itself parses .proto files with (locked in package-lock.json).
const protobuf = require('protobufjs');

const CALL_TIMEOUT_MS = 5000;

function parseArgs(argv) {
  const args = {};
  for (let i = 0; i < argv.length; i += 2) {
    if (!argv[i].startsWith('--') || argv[i + 1] === undefined) {
      throw new Error(`expected --name value pairs, got ${argv.slice(i).join(' ')}`);
    }
    args[argv[i].slice(2)] = argv[i + 1];
  }
  for (const need of ['gateway', 'ca', 'cert', 'key', 'proto-root', 'googleapis', 'user']) {
    if (!args[need]) throw new Error(`missing --${need}`);
  }
  return args;
}

function gatewayClient(args) {
  const definition = protoLoader.loadSync('paykit/v1/payment.proto', {
    includeDirs: [args['proto-root']], keepCase: true, longs: String, enums: String, defaults: true,
  });
  const paykit = grpc.loadPackageDefinition(definition).paykit.v1;
  const credentials = grpc.credentials.createSsl(
    fs.readFileSync(args.ca), fs.readFileSync(args.key), fs.readFileSync(args.cert));
  // Like the Python client: the server must present the gateway's own certificate.
  const options = args['server-name'] ? { 'grpc.ssl_target_name_override': args['server-name'] } : {};
  return new paykit.Gateway(args.gateway, credentials, options);
}

function call(client, method, request, token) {
  const metadata = new grpc.Metadata();
  if (token) metadata.set('authorization', `Bearer ${token}`);
  metadata.set('x-request-id', crypto.randomUUID());
  metadata.set('x-attempt', '1');
  if (request.idempotency_key) metadata.set('idempotency-key', request.idempotency_key);
  const deadline = new Date(Date.now() + CALL_TIMEOUT_MS);
  return new Promise((resolve, reject) => {
    client[method](request, metadata, { deadline }, (err, reply) => (err ? reject(err) : resolve(reply)));
  });
}

// google.rpc.Status from the trailer, with each detail unpacked by its type URL.
function richDetails(err, googleapis) {
  const root = protobuf.loadSync([
    path.join(googleapis, 'google/rpc/status.proto'),
    path.join(googleapis, 'google/rpc/error_details.proto'),
  ]);
  const [bin] = err.metadata.get('grpc-status-details-bin');
  if (!bin) return null;
  const status = root.lookupType('google.rpc.Status').decode(bin);
  const details = status.details.map((any) => {
    const typeName = any.type_url.slice(any.type_url.lastIndexOf('/') + 1);
    const type = root.lookupType(typeName);
    return { type: typeName, ...type.toObject(type.decode(any.value), { defaults: true }) };
  });
  return { code: status.code, message: status.message, details };
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const client = gatewayClient(args);
  const user = args.user;
  const out = {};
  out.register = await call(client, 'Register', {
    username: user, password: 'node-password-1', account_id: `${user}-acct`,
    opening_balance_minor: '100000', bank: 'BankA',
  });
  const auth = await call(client, 'Authenticate', { username: user, password: 'node-password-1' });
  out.authenticated = { username: auth.username, token_present: auth.token.length > 0 };
  const key = crypto.randomUUID();
  const pay = { idempotency_key: key, to_bank: 'BankB', to_account: 'recipient123', amount_minor: '2500' };
  out.pay = (await call(client, 'Pay', pay, auth.token)).payment;
  out.pay_retry = (await call(client, 'Pay', pay, auth.token)).payment;  // same key: replayed, not paid twice
  out.balance = await call(client, 'GetBalance', {}, auth.token);
  try {
    await call(client, 'Pay', { ...pay, idempotency_key: crypto.randomUUID(), amount_minor: '0' }, auth.token);
    out.error = null;
  } catch (err) {
    out.error = { code: grpc.status[err.code], details: err.details, status: richDetails(err, args.googleapis) };
  }
  client.close();
  process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch((err) => {
  process.stderr.write(`node client failed: ${err.stack || err}\n`);
  process.exit(1);
});
