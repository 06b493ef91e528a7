// Serves web/dist the way the gateway does (cache headers, SPA fallback,
// the security headers of security-headers.json) and passes /v1,
// /.well-known and /openapi.json to the gateway.
//
// The browser tests use it only when the gateway they started does not
// serve the console itself (a gateway without `[gateway] console_dir`);
// they say so in their output.
import { createServer, request as httpRequest } from 'node:http';
import { createReadStream, existsSync, readFileSync, statSync } from 'node:fs';
import { extname, join, normalize, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const web = resolve(fileURLToPath(import.meta.url), '../..');
export const SECURITY_HEADERS = JSON.parse(readFileSync(join(web, 'security-headers.json'), 'utf8'));

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json',
  '.txt': 'text/plain; charset=utf-8',
};

const API = [/^\/v1\//, /^\/\.well-known\//, /^\/openapi\.json$/];

export function serveConsole({ dist = join(web, 'dist'), gateway }) {
  const upstream = new URL(gateway);
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    if (API.some((re) => re.test(url.pathname))) {
      const proxied = httpRequest(
        {
          host: upstream.hostname,
          port: upstream.port,
          method: req.method,
          path: req.url,
          headers: { ...req.headers, host: upstream.host },
        },
        (up) => {
          res.writeHead(up.statusCode ?? 502, up.headers);
          up.pipe(res);
        },
      );
      proxied.on('error', () => {
        res.writeHead(502).end();
      });
      req.pipe(proxied);
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    let file = normalize(join(dist, decodeURIComponent(url.pathname)));
    if (!file.startsWith(dist) || !existsSync(file) || statSync(file).isDirectory()) {
      file = join(dist, 'index.html'); // SPA fallback
    }
    const isIndex = file.endsWith('index.html');
    res.writeHead(200, {
      ...SECURITY_HEADERS,
      'content-type': TYPES[extname(file)] ?? 'application/octet-stream',
      'cache-control': isIndex
        ? 'no-cache'
        : file.includes(`${join(dist, 'assets')}`)
          ? 'public, max-age=31536000, immutable'
          : 'public, max-age=3600',
    });
    if (req.method === 'HEAD') res.end();
    else createReadStream(file).pipe(res);
  });
  return new Promise((ok) =>
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      ok({ base: `http://127.0.0.1:${port}`, close: () => new Promise((r) => server.close(r)) });
    }),
  );
}
