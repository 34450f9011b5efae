# plot.gp — the comparison figure: run throughput against local memory, one line per system,
# one panel per key distribution (like the reference design's figure).
#
#   gnuplot -e "files='a.dat b.dat'; titles='zipfian uniform'; outfile='x.png'; \
#               heading='workload A ...'" bench/plot.gp
#
# Each .dat file (written by bench/compare) has a header line "pct SYSTEM1 SYSTEM2 ...",
# then one row per local-memory percentage with the median run throughput of each system
# in ops/s; "?" marks a point that was not measured or failed. The y axis is logarithmic:
# unswapped and swapped throughputs differ by orders of magnitude.
if (!exists("files")) files = 'compare.dat'
if (!exists("titles")) titles = files
if (!exists("outfile")) outfile = 'compare.png'
if (!exists("heading")) heading = 'lethe-bench: Lethe vs kernel swap'

n = words(files)
set terminal pngcairo size (640 * n + 220), 520 font ",10"
set output outfile
set datafile missing "?"
set key autotitle columnheader
set key outside right top vertical Left reverse samplen 2 font ",9"
set grid ytics lc rgb "#dddddd"
set xlabel "local memory (% of the working set)"
set ylabel "run throughput (ops/s)"
set xrange [105:20]
set xtics ("100%%" 100, "75%%" 75, "50%%" 50, "25%%" 25)
set logscale y
set format y "%.0s%c"
set style data linespoints
set pointsize 1.2

set multiplot layout 1, n title heading font ",12"
do for [k = 1:n] {
    set title word(titles, k)
    if (k < n) { unset key } else { set key }
    plot for [i = 2:*] word(files, k) using 1:i lw 2 pt (i % 7 + 1)
}
unset multiplot
