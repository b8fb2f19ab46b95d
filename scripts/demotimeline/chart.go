package main

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"time"

	xfont "golang.org/x/image/font"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

var (
	colorLive     = color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff}  // green
	colorReplayed = color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}  // blue
	colorMissing  = color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}  // red
	colorDown     = color.NRGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0x30} // red, faint
)

// drawChart writes the timeline as a PNG: time across, one bar per
// redis_up sample the receiver holds (blue when it was scraped while the
// receiver was down, so it came from redwire's disk buffer; green
// otherwise), a red cross per missing scrape, and the outage shaded. The
// title carries the bottom line.
func drawChart(path string, tl timeline, values map[int64]int64, down span, t tally) error {
	if len(tl.Slots) == 0 {
		return fmt.Errorf("chart %s: the receiver holds no scrape to draw", path)
	}
	p := plot.New()
	for _, f := range []*font.Font{&p.Title.TextStyle.Font, &p.X.Label.TextStyle.Font, &p.Y.Label.TextStyle.Font,
		&p.X.Tick.Label.Font, &p.Y.Tick.Label.Font, &p.Legend.TextStyle.Font} {
		f.Variant = "Sans"
	}
	p.Title.Text = fmt.Sprintf("redwire demo: receiver down %s, %s samples taken, %s delivered, %s lost",
		seconds(down.To.Sub(down.From)), grouped(t.Taken), grouped(t.Delivered), grouped(t.Lost()))
	p.Title.TextStyle.Font.Size = vg.Points(15)
	p.Title.TextStyle.Font.Weight = xfont.WeightBold
	if t.Lost() != 0 || t.Missing > 0 {
		p.Title.TextStyle.Color = colorMissing
	}
	p.Title.Padding = vg.Points(8)
	zone, _ := tl.Slots[0].T.Local().Zone()
	p.X.Label.Text = fmt.Sprintf("time (%s): one bar per scrape of Redis, every %s", zone, tl.Interval)
	p.Y.Label.Text = "redis_up"

	const yMax = 1.9 // headroom above the bars for the legend and the outage label
	first, last := unix(tl.Slots[0].T)-1, unix(tl.Slots[len(tl.Slots)-1].T)+1
	p.X.Min, p.X.Max = first, last
	p.X.Tick.Marker = clockTicks{}
	p.Y.Min, p.Y.Max = 0, yMax
	p.Y.Tick.Marker = plot.ConstantTicks{{Value: 0, Label: "0"}, {Value: 1, Label: "1"}}
	grid := plotter.NewGrid()
	grid.Vertical.Color = nil // the bars mark the seconds
	p.Add(grid)

	shade, err := plotter.NewPolygon(plotter.XYs{
		{X: unix(down.From), Y: 0}, {X: unix(down.To), Y: 0}, {X: unix(down.To), Y: yMax}, {X: unix(down.From), Y: yMax}})
	if err != nil {
		return fmt.Errorf("chart %s: %w", path, err)
	}
	shade.Color, shade.LineStyle.Width = colorDown, 0
	note, err := plotter.NewLabels(plotter.XYLabels{
		XYs:    []plotter.XY{{X: (unix(down.From) + unix(down.To)) / 2, Y: 1.12}},
		Labels: []string{"receiver down " + seconds(down.To.Sub(down.From)) + "\nredwire keeps scraping, to disk"},
	})
	if err != nil {
		return fmt.Errorf("chart %s: %w", path, err)
	}
	for i := range note.TextStyle {
		note.TextStyle[i].XAlign = draw.XCenter
		note.TextStyle[i].Color = colorMissing
		note.TextStyle[i].Font.Size = vg.Points(11)
		note.TextStyle[i].Font.Variant = "Sans"
	}

	width := 0.7 * tl.Interval.Seconds()
	live := &bars{width: width, color: colorLive}
	replayed := &bars{width: width, color: colorReplayed}
	var missing plotter.XYs
	for _, s := range tl.Slots {
		switch {
		case !s.Present:
			missing = append(missing, plotter.XY{X: unix(s.T), Y: 0.5})
		case down.contains(s.T):
			replayed.add(unix(s.T), float64(values[s.T.UnixMilli()]))
		default:
			live.add(unix(s.T), float64(values[s.T.UnixMilli()]))
		}
	}
	p.Add(shade, live, replayed, note)
	p.Legend.Add("scraped while the receiver was up", live)
	p.Legend.Add("scraped while it was down: kept in redwire's disk buffer, replayed", replayed)
	if len(missing) > 0 {
		crosses, err := plotter.NewScatter(missing)
		if err != nil {
			return fmt.Errorf("chart %s: %w", path, err)
		}
		crosses.GlyphStyle = draw.GlyphStyle{Color: colorMissing, Radius: vg.Points(7), Shape: draw.CrossGlyph{}}
		p.Add(crosses)
		p.Legend.Add("missing: the receiver has no sample of this scrape", crosses)
	}
	p.Legend.Top, p.Legend.Left = true, true
	p.Legend.XOffs, p.Legend.YOffs = vg.Points(6), -vg.Points(4)
	p.Legend.TextStyle.Font.Size = vg.Points(11)
	p.Legend.Padding = vg.Points(4)

	c := vgimg.NewWith(vgimg.UseWH(11*vg.Inch, 4*vg.Inch), vgimg.UseDPI(120))
	p.Draw(draw.New(c))
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("chart: %w", err)
	}
	if _, err := (vgimg.PngCanvas{Canvas: c}).WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("chart %s: %w", path, err)
	}
	return f.Close()
}

func unix(t time.Time) float64 { return float64(t.UnixMilli()) / 1000 }

// clockTicks marks every 5 s of a unix-seconds axis, labelled with the
// local time of day every 10 s.
type clockTicks struct{}

func (clockTicks) Ticks(lo, hi float64) []plot.Tick {
	var ticks []plot.Tick
	for s := math.Ceil(lo/5) * 5; s <= hi; s += 5 {
		t := plot.Tick{Value: s}
		if math.Mod(s, 10) == 0 {
			t.Label = time.Unix(int64(s), 0).Format("15:04:05")
		}
		ticks = append(ticks, t)
	}
	return ticks
}

// bars is one bar per sample, from 0 to its value, centred on its time.
type bars struct {
	xs, ys []float64
	width  float64 // in x units
	color  color.Color
}

// stub keeps a sample of value 0 visible.
const stub = 0.04

func (b *bars) add(x, y float64) {
	b.xs, b.ys = append(b.xs, x), append(b.ys, max(y, stub))
}

func (b *bars) Plot(c draw.Canvas, p *plot.Plot) {
	trX, trY := p.Transforms(&c)
	for i := range b.xs {
		x0, x1 := trX(b.xs[i]-b.width/2), trX(b.xs[i]+b.width/2)
		y0, y1 := trY(0), trY(b.ys[i])
		c.FillPolygon(b.color, c.ClipPolygonXY([]vg.Point{{X: x0, Y: y0}, {X: x1, Y: y0}, {X: x1, Y: y1}, {X: x0, Y: y1}}))
	}
}

func (b *bars) DataRange() (xmin, xmax, ymin, ymax float64) {
	xmin, xmax = math.Inf(1), math.Inf(-1)
	for _, x := range b.xs {
		xmin, xmax = min(xmin, x-b.width/2), max(xmax, x+b.width/2)
	}
	return xmin, xmax, 0, 1
}

func (b *bars) Thumbnail(c *draw.Canvas) {
	c.FillPolygon(b.color, []vg.Point{c.Min, {X: c.Max.X, Y: c.Min.Y}, c.Max, {X: c.Min.X, Y: c.Max.Y}})
}
