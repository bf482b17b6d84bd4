"use strict";
/**
 * Servers and load clients run at a high CFS priority so that other work on
 * the machine (a shared 2-core box) disturbs the measurement less: each is
 * started in its own session (detached), hence its own scheduler autogroup
 * when kernel.sched_autogroup_enabled=1, so the autogroup gets the nice value
 * too (plain nice only ranks processes within one autogroup). Root only;
 * `--no-priority` on the command line turns it off.
 */
const fs = require("node:fs");

const PRIORITY = process.getuid?.() === 0 && !process.argv.includes("--no-priority");
/** Prefix for a command line. */
const NICE = PRIORITY ? ["nice", "-n", "-15"] : [];
/** Gives a detached child's autogroup the same nice value. */
function boost(child) {
  if (!PRIORITY) return;
  try {
    fs.writeFileSync(`/proc/${child.pid}/autogroup`, "-15");
  } catch {
    /* no autogroup support: nice alone */
  }
}

module.exports = { PRIORITY, NICE, boost };
