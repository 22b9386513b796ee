// Draws every <div class="chart" data-figure="ID"> from the plotly figure that Django's
// json_script put in <script type="application/json" id="ID">. One static file, so the
// Content-Security-Policy never has to allow inline script.
(function () {
  "use strict";

  const darkScheme = window.matchMedia("(prefers-color-scheme: dark)");
  // Containers plotly has drawn. htmx history restores hand back clones of old markup
  // (with a dead SVG inside), and those are new elements, so they are drawn afresh.
  const drawn = new WeakSet();

  function cssVar(style, name) {
    return style.getPropertyValue(name).trim();
  }

  function isPlainObject(value) {
    return value !== null && typeof value === "object" && !Array.isArray(value);
  }

  function merged(base, overrides) {
    const result = Object.assign({}, base);
    for (const [key, value] of Object.entries(overrides)) {
      result[key] = isPlainObject(value) && isPlainObject(base[key]) ? merged(base[key], value) : value;
    }
    return result;
  }

  // Colours come from app.css, so the charts follow the light and dark themes with the page.
  function themeLayout() {
    const style = getComputedStyle(document.documentElement);
    const text = cssVar(style, "--chart-text");
    const grid = cssVar(style, "--chart-grid");
    const axisLine = cssVar(style, "--chart-axis");
    const colorway = [1, 2, 3, 4, 5, 6, 7, 8].map((n) => cssVar(style, "--chart-" + n)).filter(Boolean);
    const axis = {
      gridcolor: grid,
      linecolor: axisLine,
      zerolinecolor: axisLine,
      tickcolor: axisLine,
      tickfont: { color: text },
      title: { font: { color: text } },
    };
    return {
      colorway: colorway,
      font: { color: text, family: cssVar(style, "--font-sans") },
      paper_bgcolor: "rgba(0,0,0,0)",
      plot_bgcolor: "rgba(0,0,0,0)",
      xaxis: Object.assign({ showgrid: false, showline: true }, axis),
      yaxis: Object.assign({ showline: false }, axis),
      legend: { font: { color: text } },
      hoverlabel: {
        bgcolor: cssVar(style, "--surface"),
        bordercolor: cssVar(style, "--border-strong"),
        font: { color: cssVar(style, "--text") },
      },
    };
  }

  // Stacked bars are separated by a hairline; in the page's surface colour it reads as a gap
  // in either theme (plotly's default is a light line that glows on dark backgrounds).
  function themedTraces(traces) {
    const surface = cssVar(getComputedStyle(document.documentElement), "--surface");
    return traces.map((trace) =>
      trace.type === "bar" ? merged({ marker: { line: { color: surface, width: 1 } } }, trace) : trace
    );
  }

  function figureFor(container) {
    const source = document.getElementById(container.dataset.figure);
    if (!source) {
      throw new Error("chart: no figure data with id " + container.dataset.figure);
    }
    return JSON.parse(source.textContent);
  }

  // On a narrow screen (a phone) the legend goes below everything, across, left-aligned, in the
  // container's coordinates: plotly then makes room for it under the x axis' labels instead of
  // laying it over them (a legend at a fixed fraction below the plot lands on two-line dates).
  const NARROW = 640;

  function narrowLayout(container) {
    if (container.clientWidth >= NARROW) {
      return {};
    }
    return {
      legend: { orientation: "h", x: 0, xanchor: "left", y: 0, yanchor: "bottom", yref: "container" },
    };
  }

  function draw(container) {
    const figure = figureFor(container);
    if (!drawn.has(container)) {
      container.replaceChildren();
    }
    const layout = merged(merged(figure.layout || {}, themeLayout()), narrowLayout(container));
    window.Plotly.react(container, themedTraces(figure.data || []), layout, {
      responsive: true,
      displayModeBar: false,
    });
    drawn.add(container);
  }

  function drawCharts(options) {
    if (!window.Plotly) {
      return;
    }
    for (const container of document.querySelectorAll(".chart[data-figure]")) {
      if (options.redraw || !drawn.has(container)) {
        draw(container);
      }
    }
  }

  function drawNew() {
    drawCharts({ redraw: false });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", drawNew);
  } else {
    drawNew();
  }
  // Charts htmx swaps out are purged, or plotly's resize listeners keep them alive.
  document.addEventListener("htmx:beforeCleanupElement", (event) => {
    const element = event.target;
    if (drawn.has(element) && window.Plotly) {
      window.Plotly.purge(element);
      drawn.delete(element);
    }
  });
  document.addEventListener("htmx:afterSettle", drawNew);
  darkScheme.addEventListener("change", () => drawCharts({ redraw: true }));
  // A phone turned sideways (or a window resized) across the narrow width: legends move.
  window.matchMedia("(max-width: " + NARROW + "px)").addEventListener("change", () => drawCharts({ redraw: true }));
})();
