"""The report: Markdown tables of paired ratios, cost per new code object, growth, and the issue's targets."""

import statistics

from .runner import BUILTIN_OF, VARIANTS


def fmt_range(values, digits=3):
    return "%.*f (%.*f–%.*f)" % (digits, statistics.median(values), digits, min(values), digits, max(values))


def paired(a, b, op):
    return [op(x, y) for x, y in zip(a, b)]


def ratio(x, y):
    return x / y


def growth(small, large, fixed):
    return (large - fixed) / (small - fixed) if small > fixed else float("inf")


class Report:
    def __init__(self, bench, interpreters, workloads):
        self.bench = bench
        self.interpreters = interpreters
        self.workloads = workloads
        # Both CPU figures, side by side: the work section is what a call costs, the whole
        # process adds start-up (turning support on), which `startup` shows by itself.
        self.measures = [("work CPU", bench.work_cpu), ("whole-process CPU", bench.cpu)]
        self.out = []
        # (target, case, value, limit)
        self.verdicts = []

    def lines(self, text):
        self.out.append(text)

    def text(self):
        self.per_call("Per call: CPU of the work section alone (`time.process_time()` in the workload,"
                      " start-up and imports excluded)", *self.measures[0])
        self.per_call("Whole process: child CPU from `wait4` (start-up included)", *self.measures[1])
        self.per_code_object()
        self.growth()
        self.targets()
        return "\n".join(self.out)

    def per_call(self, title, label, table):
        rows = [w for w in self.workloads if not w.creation]
        if not rows:
            return
        self.lines("### %s, relative to no support (paired median, min–max over rounds)\n" % title)
        names = [v.name for v in VARIANTS if not v.creation_only and v.name != "none"]
        self.lines("| interpreter | workload | none (s) | " + " | ".join(names) + " | ours-perf / cpython-perf"
                   " | ours-perf_jit / cpython-perf_jit |")
        self.lines("|---" * (len(names) + 5) + "|")
        for interp in self.interpreters:
            for w in rows:
                base = table[(interp.name, w.name, "none")]
                cells = []
                for n in names:
                    t = table.get((interp.name, w.name, n))
                    cells.append(fmt_range(paired(t, base, ratio)) if t else "–")
                for ours in ("ours-perf", "ours-perf_jit"):
                    builtin = table.get((interp.name, w.name, BUILTIN_OF[ours]))
                    if builtin is None:
                        cells.append("–")
                        continue
                    rs = paired(table[(interp.name, w.name, ours)], builtin, ratio)
                    cells.append(fmt_range(rs))
                    self.verdicts.append(("per-call ratio vs CPython's built-in <= 1.02, " + label,
                                          "%s %s %s" % (interp.name, w.name, ours), statistics.median(rs), 1.02))
                self.lines("| %s | %s | %.3f | %s |" % (interp.name, w.name, statistics.median(base),
                                                        " | ".join(cells)))
        self.lines("")

    def per_code_object(self):
        creation = [w for w in self.workloads if w.code_objects]
        if not creation:
            return
        self.lines("### Cost per new code object (µs; (CPU with − CPU without) / functions, paired median,"
                   " min–max) and output bytes per record\n")
        header = "| interpreter | workload | variant | "
        for label, _ in self.measures:
            header += "µs per code object, %s | × below CPython's built-in | " % label
        self.lines(header + "bytes per record |")
        self.lines("|---" * (4 + 2 * len(self.measures)) + "|")
        for interp in self.interpreters:
            for w in creation:
                variants = interp.variants(w)[1:]
                costs = []
                for _, table in self.measures:
                    base = table[(interp.name, w.name, "none")]
                    costs.append({v.name: paired(table[(interp.name, w.name, v.name)], base,
                                                 lambda x, y, w=w: (x - y) / w.code_objects * 1e6)
                                  for v in variants})
                for v in variants:
                    cells = []
                    for (label, _), per in zip(self.measures, costs):
                        us = statistics.median(per[v.name])
                        builtin = per.get(BUILTIN_OF.get(v.name))
                        cells.append(fmt_range(per[v.name], 2))
                        cells.append("%.2f" % (statistics.median(builtin) / us) if builtin else "–")
                        if w.name == "many" and v.name in ("ours-perf", "ours-both"):
                            limit = 0.3 if v.name == "ours-perf" else 0.6
                            case = "%s %s" % (interp.name, v.name)
                            self.verdicts.append(("first-call cost <= %.1f µs, %s" % (limit, label), case, us, limit))
                            if builtin:
                                self.verdicts.append(("first-call cost: ours / CPython's built-in <= 0.25, " + label,
                                                      case, us / statistics.median(builtin), 0.25))
                    sizes = self.bench.file_bytes.get((interp.name, w.name, v.name), [])
                    cells.append(" + ".join("%.0f" % (b / max(n, 1)) for b, n in sizes))
                    self.lines("| %s | %s | %s | %s |" % (interp.name, w.name, v.name, " | ".join(cells)))
        self.lines("")

    def growth(self):
        names = {w.name for w in self.workloads}
        if not {"many", "many10k"} <= names:
            return
        self.lines("### Growth: the support's extra cost at 100,000 vs 10,000 functions (paired medians,"
                   " whole process)\n")
        self.lines("| interpreter | variant | extra CPU at start-up (ms) | extra CPU 10k (ms) | extra CPU 100k (ms)"
                   " | ratio | ratio less start-up | µs per function 10k→100k | extra peak RSS at start-up (KiB)"
                   " | extra peak RSS 10k (KiB) | extra peak RSS 100k (KiB) | ratio | ratio less start-up"
                   " | bytes per function 10k→100k |")
        self.lines("|---" * 14 + "|")
        many = next(w for w in self.workloads if w.name == "many")
        added = many.code_objects - next(w for w in self.workloads if w.name == "many10k").code_objects
        bench = self.bench
        for interp in self.interpreters:
            def extra(table, wname, variant, interp=interp):
                return statistics.median(paired(table[(interp.name, wname, variant)],
                                                table[(interp.name, wname, "none")], lambda x, y: x - y))

            for v in interp.variants(many)[1:]:
                cpu10, cpu100 = extra(bench.cpu, "many10k", v.name) * 1e3, extra(bench.cpu, "many", v.name) * 1e3
                rss10, rss100 = extra(bench.rss, "many10k", v.name), extra(bench.rss, "many", v.name)
                # Activation (import, compile, open files, the extension's pages) is paid once
                # whatever the count; "less start-up" takes it out of both sides.
                start = "startup" in names
                cpu0 = extra(bench.cpu, "startup", v.name) * 1e3 if start else 0.0
                rss0 = extra(bench.rss, "startup", v.name) if start else 0
                cpu_ratio, cpu_net = growth(cpu10, cpu100, 0), growth(cpu10, cpu100, cpu0)
                rss_ratio, rss_net = growth(rss10, rss100, 0), growth(rss10, rss100, rss0)
                # The slope columns: what one more function costs once the fixed costs are paid,
                # free of what start-up leaves behind for reuse.
                self.lines("| %s | %s | %.1f | %.1f | %.1f | %.2f | %.2f | %.2f | %d | %d | %d | %.2f | %.2f | %.1f |" % (
                    interp.name, v.name, cpu0, cpu10, cpu100, cpu_ratio, cpu_net, (cpu100 - cpu10) * 1e3 / added,
                    rss0, rss10, rss100, rss_ratio, rss_net, (rss100 - rss10) * 1024 / added))
                if v.name.startswith("ours"):
                    case = "%s %s" % (interp.name, v.name)
                    self.verdicts.append(("10x code objects costs <= 10.5x CPU", case, cpu_ratio, 10.5))
                    self.verdicts.append(("10x code objects costs <= 10.5x CPU, less start-up", case, cpu_net, 10.5))
                    self.verdicts.append(("10x code objects costs <= 10.5x memory", case, rss_ratio, 10.5))
                    self.verdicts.append(("10x code objects costs <= 10.5x memory, less start-up", case, rss_net, 10.5))
        self.lines("")

    def targets(self):
        if not self.verdicts:
            return
        self.lines("### Targets (each case's value is in the tables above)\n")
        self.lines("| target | met in | worst case | its value |")
        self.lines("|---|---|---|---|")
        for target in dict.fromkeys(t for t, _, _, _ in self.verdicts):
            cases = [(value, case, limit) for t, case, value, limit in self.verdicts if t == target]
            met = sum(value <= limit for value, _, limit in cases)
            value, case, _ = max(cases)
            self.lines("| %s | %d of %d | %s | %.3f |" % (target, met, len(cases), case, value))
