import { defineConfig } from 'vitest/config';

// The console is served by the gateway (`cloudsec up`, `[gateway] console_dir`)
// and by S3/CloudFront; both put /v1 on the same origin, so the client calls
// relative URLs. `npm run dev` proxies them to a running platform
// (CLOUDSEC_GATEWAY, default http://127.0.0.1:8080).
const gateway = process.env.CLOUDSEC_GATEWAY ?? 'http://127.0.0.1:8080';

export default defineConfig({
  // No @vitejs/plugin-react: Vite's own transform compiles the JSX
  // (automatic runtime), which is all the build needs.
  oxc: { jsx: { runtime: 'automatic' } },
  build: {
    target: 'es2022',
    sourcemap: false,
    // One stylesheet and one entry script; nothing inline (the CSP forbids it).
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
  },
  server: {
    proxy: {
      '/v1': gateway,
      '/.well-known': gateway,
      '/openapi.json': gateway,
    },
  },
  test: {
    environment: 'jsdom',
    include: ['src/**/*.test.{ts,tsx}'],
    restoreMocks: true,
    setupFiles: ['src/test/setup.ts'],
  },
});
