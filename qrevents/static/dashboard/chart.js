/**
 * The day's payments per hour (or the week's per day) as an inline SVG bar chart: no chart
 * library, crisp at any size, each bar carrying its numbers for a tooltip and for tests.
 */

const SVG = 'http://www.w3.org/2000/svg';
const HEIGHT = 180;
const AXIS = 22; // room for the labels under the bars
const WEEKDAYS = ['dom', 'lun', 'mar', 'mié', 'jue', 'vie', 'sáb'];

function node(tag, attributes = {}, text) {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, value);
  if (text !== undefined) element.textContent = text;
  return element;
}

/** Label of a bucket: `09` for an hour, `lun 12` for a day. */
function bucketLabel(bucket, period) {
  if (period === 'day') return bucket.start.slice(11, 13);
  const [year, month, day] = bucket.start.slice(0, 10).split('-').map(Number);
  return `${WEEKDAYS[new Date(Date.UTC(year, month - 1, day)).getUTCDay()]} ${day}`;
}

/**
 * An `<svg>` of `buckets` (`{start, count, cents}`), `width` px wide (drawn at the box's own
 * width, so labels keep their size): bar heights by amount collected.
 * `describe(bucket)` gives each bar's tooltip; `summary` the chart's accessible name.
 */
export function barChart(buckets, { period, describe, summary, width }) {
  const WIDTH = Math.max(200, Math.round(width || 720));
  const svg = node('svg', {
    viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
    role: 'img',
    'aria-label': summary,
    class: 'bars',
  });
  const most = Math.max(1, ...buckets.map((bucket) => bucket.cents));
  const slot = WIDTH / Math.max(1, buckets.length);
  const room = HEIGHT - AXIS;
  buckets.forEach((bucket, index) => {
    const height = bucket.cents ? Math.max(2, (bucket.cents / most) * (room - 4)) : 0;
    const bar = node('rect', {
      x: (index * slot + slot * 0.15).toFixed(1),
      y: (room - height).toFixed(1),
      width: (slot * 0.7).toFixed(1),
      height: height.toFixed(1),
      class: 'bar',
      'data-index': index,
      'data-count': bucket.count,
      'data-cents': bucket.cents,
    });
    bar.append(node('title', {}, describe(bucket)));
    svg.append(bar);
    const every = WIDTH < 500 ? 6 : 3; // hours between labels; a phone has room for fewer
    const labelled = period === 'week' || index % every === 0;
    if (labelled) {
      svg.append(
        node(
          'text',
          { x: (index * slot + slot / 2).toFixed(1), y: HEIGHT - 6, 'text-anchor': 'middle', class: 'axis' },
          bucketLabel(bucket, period),
        ),
      );
    }
  });
  svg.append(node('line', { x1: 0, x2: WIDTH, y1: room, y2: room, class: 'baseline' }));
  return svg;
}
