// Reading the daemon's Prometheus metrics from the bench: one scrape over
// the --metrics-listen socket, and the figures of one Summary.
import { request } from 'node:http';

/** GET /metrics on a unix socket (--metrics-listen unix:PATH). */
export function scrapeUnix(socketPath: string, timeoutMs = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path: '/metrics', timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => { body += d; }).on('end', () => {
        if (res.statusCode === 200) resolve(body);
        else reject(new Error(`metrics on ${socketPath}: HTTP ${res.statusCode}: ${body.slice(0, 200)}`));
      });
    });
    req.on('timeout', () => req.destroy(new Error(`metrics on ${socketPath}: no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

export interface SummaryFigures {
  count: number;
  sum: number;
  /** quantile ("0.5", "0.99", ...) -> value */
  quantiles: Record<string, number>;
}

/** The samples of Summary `name` in the text format; null when it is not exposed. */
export function parseSummary(text: string, name: string): SummaryFigures | null {
  const out: SummaryFigures = { count: Number.NaN, sum: Number.NaN, quantiles: {} };
  let seen = false;
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{([^}]*)\})? (\S+)$/.exec(line);
    if (!m) continue;
    const [, metric, labels = '', raw] = m;
    const value = Number(raw);
    if (metric === `${name}_count`) out.count = value;
    else if (metric === `${name}_sum`) out.sum = value;
    else if (metric === name) {
      const q = /(?:^|,)quantile="([^"]+)"/.exec(labels)?.[1];
      if (q !== undefined) out.quantiles[q] = value;
    } else continue;
    seen = true;
  }
  return seen ? out : null;
}
