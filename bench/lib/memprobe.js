// preload: on SIGWINCH print memoryUsage before and after a full GC (needs --expose-gc)
const v8 = require("v8");
const fmt = (m) => Object.fromEntries(Object.entries(m).map(([k, v]) => [k, +(v / 1048576).toFixed(1)]));
process.on("SIGWINCH", () => {
  const before = process.memoryUsage();
  const hs = v8.getHeapSpaceStatistics().map((s) => `${s.space_name}:${(s.space_used_size / 1048576).toFixed(1)}/${(s.space_size / 1048576).toFixed(1)}`).join(" ");
  global.gc();
  const after = process.memoryUsage();
  console.error("MEMPROBE before", JSON.stringify(fmt(before)), "\n  spaces", hs, "\n  after gc", JSON.stringify(fmt(after)));
});
