/* Wide figures, and wide tables printed by a cell, that scroll sideways show that they do.
 *
 * On a phone a figure or a table wider than the column scrolls inside its own box,
 * and nothing else says that part of it is hidden. This script marks every figure whose
 * box overflows with the class `rnngrad-scrolls`, and with `rnngrad-more-left` or
 * `rnngrad-more-right` while part of the figure lies beyond that edge; chapters.css then
 * draws a fade at that edge, and a "scroll →" hint until the reader has scrolled the box.
 * A figure that fits gets none of it. The marks follow the box's size (a rotated phone,
 * a figure inside a solution that is opened) and its scroll position. */
(function () {
  "use strict";

  // a figure's image box, and the box of a cell's HTML output (the results tables)
  const BOX = "figure > a.image-reference, div.cell_output > div.output.text_html";

  function mark(box) {
    const figure = box.parentElement;
    const hidden = box.scrollWidth - box.clientWidth;
    const scrolls = box.clientWidth > 0 && hidden > 1;
    figure.classList.toggle("rnngrad-scrolls", scrolls);
    figure.classList.toggle("rnngrad-more-left", scrolls && box.scrollLeft > 1);
    figure.classList.toggle("rnngrad-more-right", scrolls && box.scrollLeft < hidden - 1);
    if (scrolls) {
      // the cues cover the box (not the figure's padding, nor the caption below it);
      // the figure is their origin
      const right = figure.clientWidth - box.offsetLeft - box.clientWidth;
      figure.style.setProperty("--rnngrad-box-top", box.offsetTop + "px");
      figure.style.setProperty("--rnngrad-box-height", box.clientHeight + "px");
      figure.style.setProperty("--rnngrad-box-left", box.offsetLeft + "px");
      figure.style.setProperty("--rnngrad-box-right", right + "px");
    }
  }

  function cue(className, text) {
    const element = document.createElement("span");
    element.className = className;
    element.setAttribute("aria-hidden", "true"); // the image's alt text describes it
    element.textContent = text;
    return element;
  }

  function setUp(box) {
    if (box.parentElement.tagName !== "FIGURE") {
      // a cell can print several tables: each gets a host of its own for its cues
      const host = document.createElement("div");
      host.className = "rnngrad-scroll-host";
      box.before(host);
      host.appendChild(box);
    }
    box.after(
      cue("rnngrad-scroll-fade rnngrad-scroll-fade-left", ""),
      cue("rnngrad-scroll-fade rnngrad-scroll-fade-right", ""),
      cue("rnngrad-scroll-hint", "scroll \u2192"),
    );
    box.addEventListener(
      "scroll",
      function () {
        box.parentElement.classList.add("rnngrad-scrolled");
        mark(box);
      },
      { passive: true },
    );
    box.querySelectorAll("img").forEach(function (img) {
      img.addEventListener("load", function () {
        mark(box);
      });
    });
    mark(box);
  }

  function start() {
    const boxes = document.querySelectorAll(BOX);
    boxes.forEach(setUp);
    if ("ResizeObserver" in window) {
      const observer = new ResizeObserver(function (entries) {
        entries.forEach(function (entry) {
          mark(entry.target);
        });
      });
      boxes.forEach(function (box) {
        observer.observe(box);
      });
    }
    window.addEventListener("resize", function () {
      boxes.forEach(mark);
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
