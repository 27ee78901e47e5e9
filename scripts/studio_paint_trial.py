#!/usr/bin/env python3
"""Trial harness for the Studio's paint cost (docs/studio.md, "Fifth round").

Opens a page the `studio_paint` bench saved (`ONMIC_PAINT_DOM=FILE.html`) in a bare WebKitGTK
view at 1440x900, with WebKit feature switches set before the first load, moves the meters
(30/s), the seat levels and the chat, and prints the animation-frame intervals and a
status-like change's delay to the next frame, then exits.

    DISPLAY=:N WEBKIT_SKIA_ENABLE_CPU_RENDERING=1 python3 scripts/studio_paint_trial.py \
        page.html UseDamagingInformationForCompositing=1,UnifyDamagedRegions=0

Environment: SECS (measured seconds, default 10), NOCHAT/NOMETERS=true, METERSEL (the elements
whose width moves), CHATN/CHATMS (chat lines per batch, ms between batches; default 1 every 20
ms), CHATKEEP/CHATTRIM (lines kept; lines dropped at a time), CHATSCROLL=false (no scroll to
the newest), METERPROP=transform (bars scaled instead of resized; NOLAYER=true: without a layer
of their own), METERMS/READMS (ms between bar / readout changes, default 33), EXTRA_CSS (a style
sheet added to the page), LATE=1 (set the switches after the first load instead), WIN=WxH
(the window's size, default 1440x900), SECOND=WxH+X+Y (a second web view there with BARS
bars moving every METERMS ms; set METERSEL so that the page's own meters stand still). Also prints the web process's CPU per thread name over
the measured seconds, in ms per drawn frame. Needs Debian's python3-gi and gir1.2-webkit2-4.1 (the system Python, not a venv).
A diagnostic tool: the suite does not run it.
"""
import sys, os, json
import gi
gi.require_version('Gtk', '3.0'); gi.require_version('WebKit2', '4.1')
from gi.repository import Gtk, WebKit2, GLib
page, feats = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else '')
secs = float(os.environ.get('SECS', '10'))
win = [int(x) for x in os.environ.get('WIN', '1440x900').split('x')]
w = Gtk.Window(); w.set_default_size(win[0], win[1])
v = WebKit2.WebView()
st = v.get_settings()
fl = WebKit2.Settings.get_all_features()
want = dict(p.split('=') for p in feats.split(',') if p)
def setf():
    for i in range(fl.get_length()):
        f = fl.get(i)
        if f.get_identifier() in want:
            st.set_feature_enabled(f, want[f.get_identifier()] == '1'); print('set', f.get_identifier(), want[f.get_identifier()])
    return False
if not os.environ.get('LATE'):
    setf()
# SECOND=WxH+X+Y: a second web view over the first at that place, with BARS meter bars (default
# 4) moving every METERMS ms: the meters on a surface of their own (Tauri's multi-webview), to
# compare with the same bars moving in the page.
second = os.environ.get('SECOND')
if second:
    size, _, pos = second.partition('+')
    sw, sh = (int(x) for x in size.split('x'))
    sx, sy = (int(x) for x in pos.split('+'))
    ov = Gtk.Overlay(); ov.add(v)
    v2 = WebKit2.WebView(); v2.set_size_request(sw, sh)
    v2.set_halign(Gtk.Align.START); v2.set_valign(Gtk.Align.START)
    v2.set_margin_start(sx); v2.set_margin_top(sy)
    ov.add_overlay(v2); w.add(ov)
    bars = int(os.environ.get('BARS', '4'))
    v2.load_html('''<html><body style="margin:0;background:#15151c">''' + ''.join(
        f'<div style="margin:6px 8px;height:8px;background:#222;overflow:hidden"><div class="b" style="height:100%;background:#3c6;transform-origin:left;will-change:transform"></div></div>'
        for _ in range(bars)) + '''<script>const b=[...document.querySelectorAll('.b')];
setInterval(()=>{for(const x of b)x.style.transform='scaleX('+(0.2+0.7*Math.random()).toFixed(3)+')'},''' +
        os.environ.get('METERMS', '33') + ''');</script></body></html>''', 'about:blank')
else:
    w.add(v)
w.show_all()
JS = r'''
(() => {
  { const st = document.createElement('style'); st.textContent = EXTRACSS; document.head.appendChild(st); }
  const rnd = () => Math.random();
  const meters = [...document.querySelectorAll(METERSEL)];
  const reads = [...document.querySelectorAll('.meter-readout')];
  const feed = document.querySelector('.feed');
  let n = 0;
  const byTransform = METERPROP === 'transform';
  if (byTransform) for (const m of meters) { m.style.width = '100%'; m.style.transformOrigin = 'left'; if (!NOLAYER) m.style.willChange = 'transform'; }
  if (!NOMETERS) setInterval(() => { for (const m of meters) { const f = 0.2 + 0.7 * rnd(); if (byTransform) m.style.transform = 'scaleX(' + f.toFixed(3) + ')'; else m.style.width = (100 * f).toFixed(1) + '%'; }
                      }, METERMS);
  if (!NOMETERS) setInterval(() => { for (const r of reads) r.textContent = (-30 + 20 * rnd()).toFixed(1) + ' dB'; }, READMS);
  if (feed && !NOCHAT) setInterval(() => { for (let k = 0; k < CHATN; k++) { const li = document.createElement('li'); li.textContent = 'listener-' + (n++) + ' message ' + n; feed.appendChild(li); if (feed.children.length > CHATKEEP + CHATTRIM - 1) for (let r = 0; r < CHATTRIM; r++) feed.firstElementChild.remove(); } if (CHATSCROLL) feed.scrollTop = feed.scrollHeight; }, CHATMS);
  const iv = [], d = [];
  let last = performance.now();
  const frame = (t) => { iv.push(t - last); last = t; requestAnimationFrame(frame); };
  setTimeout(() => { last = performance.now(); requestAnimationFrame(frame);
    const bar = document.querySelector('.topbar') || document.body;
    setInterval(() => { const t0 = performance.now(); bar.setAttribute('data-x', String(t0)); requestAnimationFrame(() => d.push(performance.now() - t0)); }, 97);
  }, 2000);
  setTimeout(() => {
    const q = (a, p) => { a = a.slice().sort((x, y) => x - y); return a.length ? a[Math.min(a.length - 1, Math.floor(a.length * p))].toFixed(1) : 'nan'; };
    document.title = 'RESULT frames ' + iv.length + ' interval p50 ' + q(iv, .5) + ' p90 ' + q(iv, .9) + ' | change-to-frame n ' + d.length + ' p50 ' + q(d, .5) + ' p99 ' + q(d, .99);
  }, 2000 + SECS * 1000);
})();
'''.replace('SECS', str(secs)).replace('NOCHAT', os.environ.get('NOCHAT','false')).replace('CHATN', os.environ.get('CHATN','1')).replace('CHATMS', os.environ.get('CHATMS','20')).replace('METERSEL', json.dumps(os.environ.get('METERSEL','.meter-rms, .meter-peak, .seat-level span'))).replace('EXTRACSS', json.dumps(os.environ.get('EXTRA_CSS',''))).replace('NOMETERS', os.environ.get('NOMETERS','false')).replace('METERPROP', json.dumps(os.environ.get('METERPROP','width'))).replace('CHATKEEP', os.environ.get('CHATKEEP','200')).replace('CHATTRIM', os.environ.get('CHATTRIM','1')).replace('METERMS', os.environ.get('METERMS','33')).replace('READMS', os.environ.get('READMS','33')).replace('NOLAYER', os.environ.get('NOLAYER','false')).replace('CHATSCROLL', os.environ.get('CHATSCROLL','true'))
def web_threads():
    """CPU ticks per thread name of the web process(es) this view started."""
    out = {}
    for pid in os.listdir('/proc'):
        if not pid.isdigit():
            continue
        try:
            stat = open(f'/proc/{pid}/stat').read()
            if int(stat.rsplit(')', 1)[1].split()[1]) != os.getpid() or 'WebKitWebProces' not in stat:
                continue
            for tid in os.listdir(f'/proc/{pid}/task'):
                t = open(f'/proc/{pid}/task/{tid}/stat').read()
                name = t[t.index('(') + 1:t.rindex(')')]
                f = t.rsplit(')', 1)[1].split()
                out[name] = out.get(name, 0) + int(f[11]) + int(f[12])
        except (OSError, ValueError, IndexError):
            continue
    return out
cpu0 = {}
def mark():
    cpu0.update(web_threads())
    return False
def on_load(view, ev):
    if ev == WebKit2.LoadEvent.FINISHED:
        view.run_javascript(JS, None, None, None)
        GLib.timeout_add(2000, mark)
v.connect('load-changed', on_load)
def on_title(view, _):
    t = view.get_title() or ''
    if t.startswith('RESULT'):
        print(t)
        frames = max(1, int(t.split()[2]))
        tick = 1000.0 / os.sysconf('SC_CLK_TCK')
        now = web_threads()
        used = {k: (now[k] - cpu0.get(k, 0)) * tick for k in now}
        print('web process CPU per frame (ms): ' + ', '.join(
            f'{k} {v / frames:.2f}' for k, v in sorted(used.items(), key=lambda kv: -kv[1]) if v > 0)
            + f' | all {sum(used.values()) / frames:.2f}')
        Gtk.main_quit()
v.connect('notify::title', on_title)
GLib.timeout_add_seconds(int(secs) + 30, Gtk.main_quit)
v.load_uri('file://' + os.path.abspath(page))
if os.environ.get('LATE'):
    GLib.idle_add(setf)
Gtk.main()
