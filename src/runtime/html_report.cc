// The visual report: one self-contained HTML page (docs/report.md).
//
// The C++ side reduces the Report to compact JSON (the precision map as one character per cell,
// per-portion series as arrays, per-layer aggregates, the switch log capped at kMaxSwitches) so
// that 1,000 portions × 300 layers stays a few MB; the inline JavaScript draws it on canvases.
#include "dynaprec/html_report.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>

#include "dynaprec/error.h"

namespace dynaprec {
namespace {

using nlohmann::json;
constexpr size_t kMaxSwitches = 20000;

json num(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

json parse_or_empty(const std::string& s) {
  try {
    return json::parse(s);
  } catch (const std::exception&) {
    return json::object();
  }
}

double target_of(const json& policy) {
  if (policy.is_object() && policy.contains("target_sqnr_db") &&
      policy["target_sqnr_db"].is_number())
    return policy["target_sqnr_db"].get<double>();
  return std::numeric_limits<double>::quiet_NaN();
}

std::string escape_html(const std::string& s) {
  std::string o;
  for (char c : s) {
    switch (c) {
      case '<':
        o += "&lt;";
        break;
      case '>':
        o += "&gt;";
        break;
      case '&':
        o += "&amp;";
        break;
      case '"':
        o += "&quot;";
        break;
      default:
        o += c;
    }
  }
  return o;
}

// JSON inside <script>: "</" would end the element; "<!--" could start a comment state.
std::string script_safe(std::string s) {
  std::string o;
  o.reserve(s.size() + 64);
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '<') {
      o += "\\u003c";
    } else {
      o += s[i];
    }
  }
  return o;
}

const char* kColors[] = {"#1f4e99", "#4f8fdc", "#7cc7e8", "#f0b429",
                         "#e07b39", "#2f9e44", "#c92a2a"};
static_assert(sizeof(kColors) / sizeof(kColors[0]) >= kFormatCount);

const char* kPage = R"HTML(<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>@TITLE@</title>
<style>
body{font:14px/1.4 system-ui,-apple-system,"DejaVu Sans",sans-serif;margin:0;background:#f6f7f9;color:#1d232b}
header{background:#1d2b3f;color:#fff;padding:14px 24px}
header h1{margin:0;font-size:20px}header .sub{opacity:.8;font-size:13px}
main{max-width:1240px;margin:0 auto;padding:12px 24px 48px}
section{background:#fff;border:1px solid #dde1e6;border-radius:6px;margin:14px 0;padding:12px 16px}
h2{font-size:16px;margin:0 0 8px}
.cards{display:flex;flex-wrap:wrap;gap:10px}
.card{flex:1 1 150px;background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:8px 12px}
.card .k{font-size:12px;color:#5c6773}.card .v{font-size:20px;font-weight:600}.card .d{font-size:12px;color:#2f9e44}
canvas{display:block;width:100%}
.legend span{display:inline-block;margin-right:14px;font-size:12px}
.legend i{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:-2px;border-radius:2px}
.note{font-size:12px;color:#5c6773}
table{border-collapse:collapse;width:100%;font-size:12px}
th,td{padding:3px 6px;border-bottom:1px solid #eceff2;text-align:left;white-space:nowrap}
td.r,th.r{text-align:right}th{cursor:pointer;background:#f1f3f5;position:sticky;top:0}
td.reason{white-space:normal}
.scroll{max-height:520px;overflow:auto}
.bar{display:inline-flex;width:120px;height:10px;vertical-align:middle;background:#eee}
.bar i{display:block;height:100%}
#tip{position:fixed;pointer-events:none;background:#1d2b3f;color:#fff;font-size:12px;padding:4px 8px;border-radius:4px;display:none;z-index:5}
#errors{display:none;background:#ffe3e3;color:#a61e1e;padding:8px 16px}
input{font:inherit;padding:2px 6px;margin-bottom:6px;width:260px}
</style></head>
<body>
<div id="errors"></div>
<header><h1>@TITLE@</h1><div class="sub" id="sub"></div></header>
<main>
<div class="cards" id="cards"></div>
<section><h2>Precision map <span class="note">(layers &times; portions; hover for details)</span></h2>
<div class="legend" id="legend"></div><canvas id="map"></canvas><div class="note" id="mapnote"></div></section>
<section id="ambsec"><h2>Input difficulty per portion <span class="note">(ambiguity of the probability output, mean of 1 &minus; max p, on every portion; the dynamic policy raises its budgets while it is well above the stream's usual)</span></h2><canvas id="amb" height="200"></canvas><div class="legend" id="amblegend"></div></section>
<section><h2>Output SQNR per portion <span class="note">(measured on canary portions against an fp32 run)</span></h2><canvas id="sqnr" height="260"></canvas><div class="legend" id="sqnrlegend"></div></section>
<section><h2>Bytes moved per portion</h2><canvas id="bytes" height="240"></canvas><div class="legend" id="byteslegend"></div></section>
<section><h2>Time per portion</h2><canvas id="time" height="240"></canvas><div class="legend" id="timelegend"></div></section>
<section><h2>Switch log</h2><input id="swfilter" placeholder="filter (layer, format, reason)"><div class="note" id="swnote"></div>
<div class="scroll"><table id="sw"><thead><tr><th class="r">portion</th><th>layer</th><th>from</th><th>to</th><th>reason</th></tr></thead><tbody></tbody></table></div></section>
<section><h2>Layers</h2><input id="ltfilter" placeholder="filter (layer, op)"><div class="note">click a column to sort; precision bar = share of portions at each format</div>
<div class="scroll"><table id="lt"><thead></thead><tbody></tbody></table></div></section>
<section><h2>Energy model</h2><div class="note" id="energy"></div></section>
</main><div id="tip"></div>
<script type="application/json" id="data">@DATA@</script>
<script>
"use strict";
window.onerror=function(m,s,l){var e=document.getElementById("errors");e.style.display="block";
e.textContent+="script error: "+m+" (line "+l+")\n";document.body.setAttribute("data-errors","1");};
(function(){
var D=JSON.parse(document.getElementById("data").textContent);
var F=D.formats,C=D.colors,P=D.p.t.length,L=D.layers.length,tip=document.getElementById("tip");
function $(id){return document.getElementById(id);}
function fmtB(b){if(b==null)return"";var u=["B","KB","MB","GB","TB"],i=0;while(Math.abs(b)>=1000&&i<4){b/=1000;i++;}return b.toFixed(b<10&&i?2:1)+" "+u[i];}
function fmtN(x,d){return x==null||!isFinite(x)?"\u2013":x.toFixed(d==null?1:d);}
function el(t,txt,cls){var e=document.createElement(t);if(txt!=null)e.textContent=txt;if(cls)e.className=cls;return e;}
function legend(id,items){var g=$(id);items.forEach(function(it){var s=el("span");var i=el("i");i.style.background=it[1];s.appendChild(i);s.appendChild(document.createTextNode(it[0]));g.appendChild(s);});}
function showTip(ev,txt){tip.style.display="block";tip.textContent=txt;tip.style.left=(ev.clientX+12)+"px";tip.style.top=(ev.clientY+12)+"px";}
function hideTip(){tip.style.display="none";}
var S=D.summary;
$("sub").textContent=D.model+" \u2014 policy "+(D.policy.name||"?")+(D.target!=null?", target "+D.target+" dB":"")+" \u2014 "+P+" portions, "+L+" layers";
function card(k,v,d){var c=el("div",null,"card");c.appendChild(el("div",k,"k"));c.appendChild(el("div",v,"v"));if(d)c.appendChild(el("div",d,"d"));$("cards").appendChild(c);}
function saved(a,b){return b>0?(100*(1-a/b)).toFixed(1)+"% less than fp32":"";}
card("portions",String(P),S.switches+" precision switches");
card("time",fmtN(S.time_ms,1)+" ms",S.canary_ms>0?"incl. "+fmtN(S.canary_ms,1)+" ms of fp32 canary runs":"");
card("bytes moved",fmtB(S.bytes),saved(S.bytes,S.bytes_fp32)+" ("+fmtB(S.bytes_fp32)+")");
function fmtE(u){return u>=1e6?fmtN(u/1e6,2)+" J":u>=1e3?fmtN(u/1e3,2)+" mJ":fmtN(u,1)+" \u00b5J";}
card("energy (model)",fmtE(S.energy_uj),saved(S.energy_uj,S.energy_uj_fp32));
if(S.canaries>0)card("output SQNR",(S.canaries-S.below)+" / "+S.canaries+" canaries",D.target!=null?"at or above "+D.target+" dB":"");
var sh=[];F.forEach(function(f,i){if(S.share[i]>0)sh.push(f+" "+(100*S.share[i]).toFixed(0)+"%");});
card("MACs by precision",sh.slice(0,2).join(", ")||"\u2013",sh.slice(2).join(", "));
legend("legend",F.map(function(f,i){return[f,C[i]];}).filter(function(x,i){return S.used[i];}).concat([["not run","#e9ecef"]]));
// --- precision map: one offscreen pixel per (portion, layer), scaled without smoothing ---
(function(){
var cv=$("map");if(!P||!L){$("mapnote").textContent="no data";return;}
var off=document.createElement("canvas");off.width=P;off.height=L;var oc=off.getContext("2d");
var img=oc.createImageData(P,L),px=img.data,rgb=C.map(function(h){return[parseInt(h.substr(1,2),16),parseInt(h.substr(3,2),16),parseInt(h.substr(5,2),16)];});
for(var p=0;p<P;p++)for(var l=0;l<L;l++){var c=D.map.charCodeAt(p*L+l)-97,o=4*(l*P+p),v=c>=0&&c<rgb.length?rgb[c]:[233,236,239];px[o]=v[0];px[o+1]=v[1];px[o+2]=v[2];px[o+3]=255;}
oc.putImageData(img,0,0);
var cellH=Math.max(1,Math.min(14,Math.floor(900/L))),labW=cellH>=9?170:0,W=cv.clientWidth||1100,H=L*cellH+22;
var dpr=window.devicePixelRatio||1;cv.width=W*dpr;cv.height=H*dpr;cv.style.height=H+"px";
var g=cv.getContext("2d");g.scale(dpr,dpr);g.imageSmoothingEnabled=false;g.fillStyle="#fff";g.fillRect(0,0,W,H);
var mw=W-labW-4;g.drawImage(off,0,0,P,L,labW,0,mw,L*cellH);
g.fillStyle="#333";g.font="10px sans-serif";
if(labW){for(var l2=0;l2<L;l2++){var n=D.layers[l2].n;if(n.length>28)n="\u2026"+n.substr(n.length-27);g.fillText(n,2,l2*cellH+cellH-2);}}
var step=Math.max(1,Math.ceil(P/10));for(var t=0;t<P;t+=step){var x=labW+mw*(t+0.5)/P;g.fillRect(x,L*cellH,1,4);g.fillText(String(D.p.idx[t]),x+2,L*cellH+14);}
$("mapnote").textContent=P+" portions \u00d7 "+L+" layers"+(P>mw?" (several portions per pixel column: zoom the page for detail)":"");
cv.onmousemove=function(ev){var r=cv.getBoundingClientRect(),x=ev.clientX-r.left-labW,y=ev.clientY-r.top;
var p=Math.floor(x/mw*P),l=Math.floor(y/cellH);if(p<0||p>=P||l<0||l>=L){hideTip();return;}
var c=D.map.charCodeAt(p*L+l)-97;showTip(ev,"portion "+D.p.idx[p]+" \u2014 "+D.layers[l].n+" ("+D.layers[l].op+"): "+(c>=0?F[c]:"not run"));};
cv.onmouseleave=hideTip;})();
// --- line charts ---
function chart(id,series,o){var cv=$(id),W=cv.clientWidth||1100,H=cv.height,dpr=window.devicePixelRatio||1;
cv.width=W*dpr;cv.height=H*dpr;cv.style.height=H+"px";var g=cv.getContext("2d");g.scale(dpr,dpr);
var m={l:64,r:12,t:10,b:26},pw=W-m.l-m.r,ph=H-m.t-m.b,lo=Infinity,hi=-Infinity;
series.forEach(function(s){s.d.forEach(function(v){if(v!=null&&isFinite(v)){lo=Math.min(lo,v);hi=Math.max(hi,v);}});});
(o.h||[]).forEach(function(v){lo=Math.min(lo,v);hi=Math.max(hi,v);});
if(o.zero)lo=Math.min(lo,0);if(!isFinite(lo)){lo=0;hi=1;}if(hi-lo<1e-12){hi=lo+1;}var pad=(hi-lo)*0.06;hi+=pad;if(!o.zero)lo-=pad;
function X(i){return m.l+(P>1?pw*i/(P-1):pw/2);}function Y(v){return m.t+ph*(1-(v-lo)/(hi-lo));}
g.fillStyle="#fff";g.fillRect(0,0,W,H);g.strokeStyle="#e3e6ea";g.fillStyle="#555";g.font="11px sans-serif";g.lineWidth=1;
for(var k=0;k<=4;k++){var v=lo+(hi-lo)*k/4,y=Y(v);g.beginPath();g.moveTo(m.l,y);g.lineTo(W-m.r,y);g.stroke();g.fillText(o.f?o.f(v):v.toFixed(1),4,y+4);}
var step=Math.max(1,Math.ceil(P/10));for(var t=0;t<P;t+=step)g.fillText(String(D.p.idx[t]),X(t)-4,H-8);
(o.h||[]).forEach(function(v){g.save();g.setLineDash([6,4]);g.strokeStyle="#c92a2a";g.lineWidth=1.5;g.beginPath();g.moveTo(m.l,Y(v));g.lineTo(W-m.r,Y(v));g.stroke();g.restore();});
series.forEach(function(s){g.strokeStyle=s.c;g.fillStyle=s.c;g.lineWidth=1.3;
if(s.pts){var r=P>300?1.5:2.5;s.d.forEach(function(v,i){if(v!=null&&isFinite(v)){g.beginPath();g.arc(X(i),Y(v),r,0,7);g.fill();}});}
else{g.beginPath();var on=false;s.d.forEach(function(v,i){if(v==null||!isFinite(v)){on=false;return;}if(on)g.lineTo(X(i),Y(v));else g.moveTo(X(i),Y(v));on=true;});g.stroke();}});
cv.onmousemove=function(ev){var r=cv.getBoundingClientRect(),i=Math.round((ev.clientX-r.left-m.l)/(pw||1)*(P-1));if(i<0||i>=P){hideTip();return;}
showTip(ev,"portion "+D.p.idx[i]+": "+series.map(function(s){var v=s.d[i];return s.n+" "+(v==null?"\u2013":(o.f?o.f(v):fmtN(v,2)));}).join(", "));};
cv.onmouseleave=hideTip;legend(o.lg,series.map(function(s){return[s.n,s.c];}).concat(o.h&&o.h.length?[["target","#c92a2a"]]:[]));}
var q=D.p.q;chart("sqnr",[{n:"output SQNR (dB)",c:"#1f4e99",d:q,pts:true}],{h:D.target!=null?[D.target]:[],lg:"sqnrlegend"});
if(D.p.a.some(function(v){return v!=null;}))chart("amb",[{n:"output ambiguity",c:"#7048e8",d:D.p.a}],{zero:true,lg:"amblegend",f:function(v){return v.toFixed(3);}});else $("ambsec").style.display="none";
chart("bytes",[{n:"bytes moved",c:"#2f9e44",d:D.p.b},{n:"same work at fp32",c:"#868e96",d:D.p.b32}],{zero:true,f:fmtB,lg:"byteslegend"});
var cm=D.p.cm.map(function(v,i){return D.p.c[i]?v:null;});
chart("time",[{n:"time (ms)",c:"#e07b39",d:D.p.t},{n:"fp32 run of canary portions (ms)",c:"#1f4e99",d:cm,pts:true}],{zero:true,lg:"timelegend",f:function(v){return v.toFixed(2);}});
// --- switch log ---
(function(){var tb=$("sw").tBodies[0],max=500;
function draw(){var f=$("swfilter").value.toLowerCase(),rows=[],n=0;tb.textContent="";
for(var i=0;i<D.sw.length;i++){var s=D.sw[i];if(f&&(s[1]+" "+s[2]+" "+s[3]+" "+s[4]).toLowerCase().indexOf(f)<0)continue;n++;if(n>max)continue;
var tr=el("tr");tr.appendChild(el("td",String(s[0]),"r"));tr.appendChild(el("td",s[1]));var a=el("td",s[2]);a.style.color=C[F.indexOf(s[2])];tr.appendChild(a);
var b=el("td",s[3]);b.style.color=C[F.indexOf(s[3])];tr.appendChild(b);tr.appendChild(el("td",s[4],"reason"));tb.appendChild(tr);}
$("swnote").textContent=(D.sw_total?"":"no switches. ")+"showing "+Math.min(n,max)+" of "+n+(f?" matching":"")+" switch(es)"+(D.sw_total>D.sw.length?" (the report holds "+D.sw_total+"; the first "+D.sw.length+" are embedded)":"")+"; each is decided after the portion shown, for the next.";}
$("swfilter").oninput=draw;draw();})();
// --- layer table ---
(function(){var cols=[["#","i",1],["layer","n"],["op","op"],["MMAC","macs",1],["precision","pr"],["mean SQNR dB","sq",1],["min SQNR dB","mn",1],["bytes","b",1],["vs fp32","rel",1],["time ms","t",1],["switches","sw",1],["fallback","fb"]];
var rows=D.lt.map(function(r,i){var tot=r.share.reduce(function(a,b){return a+b;},0)||1;return{i:i,n:r.n,op:r.op,macs:r.macs/1e6,share:r.share,tot:tot,pr:-r.share.reduce(function(a,c,k){return a+c*k;},0)/tot,sq:r.sq,mn:r.mn,b:r.b,rel:r.b32>0?r.b/r.b32:null,t:r.t,sw:r.sw,fb:r.fb||""};});
var key="i",dir=1,hr=el("tr");cols.forEach(function(c){var th=el("th",c[0],c[2]?"r":null);th.onclick=function(){if(key===c[1])dir=-dir;else{key=c[1];dir=1;}draw();};hr.appendChild(th);});$("lt").tHead.appendChild(hr);
var tb=$("lt").tBodies[0];
function draw(){var f=$("ltfilter").value.toLowerCase();tb.textContent="";
var rs=rows.filter(function(r){return!f||(r.n+" "+r.op).toLowerCase().indexOf(f)>=0;});
rs.sort(function(a,b){var x=a[key],y=b[key];if(x==null)return 1;if(y==null)return-1;return(x<y?-1:x>y?1:0)*dir;});
rs.forEach(function(r){var tr=el("tr");tr.appendChild(el("td",String(r.i),"r"));tr.appendChild(el("td",r.n));tr.appendChild(el("td",r.op));tr.appendChild(el("td",fmtN(r.macs,2),"r"));
var td=el("td"),bar=el("span",null,"bar");r.share.forEach(function(c,k){if(!c)return;var i=el("i");i.style.width=(100*c/r.tot)+"%";i.style.background=C[k];i.title=F[k]+" "+c;bar.appendChild(i);});
td.appendChild(bar);var best=0;r.share.forEach(function(c,k){if(c>r.share[best])best=k;});td.appendChild(document.createTextNode(" "+F[best]));tr.appendChild(td);
tr.appendChild(el("td",fmtN(r.sq,1),"r"));tr.appendChild(el("td",fmtN(r.mn,1),"r"));tr.appendChild(el("td",fmtB(r.b),"r"));tr.appendChild(el("td",r.rel==null?"\u2013":(100*r.rel).toFixed(0)+"%","r"));
tr.appendChild(el("td",fmtN(r.t,2),"r"));tr.appendChild(el("td",String(r.sw),"r"));tr.appendChild(el("td",r.fb));tb.appendChild(tr);});}
$("ltfilter").oninput=draw;draw();})();
var E=D.energy,et=[];F.forEach(function(f,i){et.push(f+" "+E.pj_per_mac[i]+" pJ/MAC");});
$("energy").textContent="energy_uj_model = \u03a3 MACs \u00d7 pJ/MAC(format) + bytes moved \u00d7 "+E.pj_per_byte+" pJ/byte. Table: "+et.join(", ")+". Source: "+E.source+". A model, not a measurement.";
document.body.setAttribute("data-rendered","ok");
})();
</script></body></html>
)HTML";

void replace_all(std::string& s, const std::string& from, const std::string& to) {
  for (size_t pos = 0; (pos = s.find(from, pos)) != std::string::npos; pos += to.size())
    s.replace(pos, from.size(), to);
}

}  // namespace

ReportTotals report_totals(const Report& r, double target_db) {
  ReportTotals t;
  const double pj32 = r.energy.pj_per_mac[static_cast<size_t>(Format::kFp32)];
  double pj = 0, pj32_total = 0;
  for (const auto& p : r.portions) {
    t.time_ms += p.time_ms;
    const uint64_t xfer = p.bytes_to_device + p.bytes_from_device;
    t.bytes += xfer;
    t.bytes_fp32 += xfer;
    pj += static_cast<double>(xfer) * r.energy.pj_per_byte;
    pj32_total += static_cast<double>(xfer) * r.energy.pj_per_byte;
    for (const auto& l : p.layers) {
      const double macs = static_cast<double>(l.macs);
      t.bytes += l.bytes;
      t.bytes_fp32 += l.bytes_fp32;
      t.macs += macs;
      t.macs_by_format[static_cast<size_t>(l.precision)] += macs;
      pj += macs * r.energy.pj_per_mac[static_cast<size_t>(l.precision)] +
            static_cast<double>(l.bytes) * r.energy.pj_per_byte;
      pj32_total += macs * pj32 + static_cast<double>(l.bytes_fp32) * r.energy.pj_per_byte;
    }
    if (p.canary) {
      t.canary_ms += p.canary_ms;
      if (p.output_sqnr_db) {
        ++t.canaries;
        if (std::isfinite(target_db) && !(*p.output_sqnr_db >= target_db))
          ++t.canaries_below_target;
      }
    }
  }
  t.energy_uj = pj * 1e-6;
  t.energy_uj_fp32 = pj32_total * 1e-6;
  return t;
}

std::string render_html(const Report& r, const std::string& title_in) {
  const json policy = parse_or_empty(r.policy_json);
  const double target = target_of(policy);
  // Layers in order of first appearance.
  std::map<std::string, size_t> index;
  std::vector<const LayerReport*> first;
  for (const auto& p : r.portions)
    for (const auto& l : p.layers)
      if (index.emplace(l.name, first.size()).second) first.push_back(&l);
  const size_t P = r.portions.size(), L = first.size();

  struct Agg {
    int64_t macs = 0;
    std::vector<int> share = std::vector<int>(kFormatCount, 0);
    double sq_sum = 0, sq_min = std::numeric_limits<double>::infinity();
    int sq_n = 0;
    uint64_t bytes = 0, bytes32 = 0;
    double time = 0;
    int switches = 0;
    std::string fallback;
    int last = -1;
  };
  std::vector<Agg> agg(L);
  std::string map(P * L, '.');
  json jt = json::array(), jb = json::array(), jb32 = json::array(), jq = json::array(),
       jc = json::array(), jcm = json::array(), jidx = json::array(), sw = json::array(),
       ja = json::array();
  size_t sw_total = 0;
  for (size_t pi = 0; pi < P; ++pi) {
    const auto& p = r.portions[pi];
    uint64_t b = p.bytes_to_device + p.bytes_from_device, b32 = b;
    for (const auto& l : p.layers) {
      const size_t li = index[l.name];
      auto& a = agg[li];
      const int f = static_cast<int>(l.precision);
      map[pi * L + li] = static_cast<char>('a' + f);
      a.macs = std::max(a.macs, l.macs);
      a.share[static_cast<size_t>(f)]++;
      if (a.last >= 0 && a.last != f) a.switches++;
      a.last = f;
      auto it = l.metrics.find("sqnr_db");
      if (it != l.metrics.end() && std::isfinite(it->second)) {
        a.sq_sum += it->second;
        a.sq_min = std::min(a.sq_min, it->second);
        a.sq_n++;
      }
      a.bytes += l.bytes;
      a.bytes32 += l.bytes_fp32;
      a.time += l.time_ms;
      if (!l.fallback.empty()) a.fallback = l.fallback;
      b += l.bytes;
      b32 += l.bytes_fp32;
    }
    jt.push_back(num(p.time_ms));
    jb.push_back(b);
    jb32.push_back(b32);
    jq.push_back(p.output_sqnr_db ? num(*p.output_sqnr_db) : json(nullptr));
    jc.push_back(p.canary ? 1 : 0);
    jcm.push_back(num(p.canary_ms));
    const auto amb = p.output_metrics.find("ambiguity");
    ja.push_back(amb != p.output_metrics.end() ? num(amb->second) : json(nullptr));
    jidx.push_back(p.index);
    for (const auto& s : p.switches) {
      ++sw_total;
      if (sw.size() < kMaxSwitches)
        sw.push_back(json::array({p.index, s.layer, std::string(format_name(s.from)),
                                  std::string(format_name(s.to)), s.reason}));
    }
  }
  json layers = json::array(), lt = json::array();
  for (size_t li = 0; li < L; ++li) {
    const auto& a = agg[li];
    layers.push_back({{"n", first[li]->name}, {"op", first[li]->op}});
    lt.push_back({{"n", first[li]->name},
                  {"op", first[li]->op},
                  {"macs", a.macs},
                  {"share", a.share},
                  {"sq", a.sq_n ? num(a.sq_sum / a.sq_n) : json(nullptr)},
                  {"mn", a.sq_n ? num(a.sq_min) : json(nullptr)},
                  {"b", a.bytes},
                  {"b32", a.bytes32},
                  {"t", a.time},
                  {"sw", a.switches},
                  {"fb", a.fallback}});
  }
  const ReportTotals tot = report_totals(r, target);
  json formats = json::array(), colors = json::array(), share = json::array(), used = json::array(),
       pj = json::array();
  for (size_t f = 0; f < kFormatCount; ++f) {
    formats.push_back(std::string(format_name(static_cast<Format>(f))));
    colors.push_back(kColors[f]);
    share.push_back(tot.macs > 0 ? tot.macs_by_format[f] / tot.macs : 0.0);
    bool u = false;
    for (const auto& a : agg) u = u || a.share[f] > 0;
    used.push_back(u);
    pj.push_back(num(r.energy.pj_per_mac[f]));
  }
  json d;
  d["model"] = r.model;
  d["policy"] = policy;
  d["device"] = parse_or_empty(r.device_json);
  d["target"] = num(target);
  d["formats"] = formats;
  d["colors"] = colors;
  d["layers"] = std::move(layers);
  d["map"] = std::move(map);
  d["p"] = {{"t", jt}, {"b", jb},   {"b32", jb32}, {"q", jq},
            {"c", jc}, {"cm", jcm}, {"idx", jidx}, {"a", ja}};
  d["sw"] = std::move(sw);
  d["sw_total"] = sw_total;
  d["lt"] = std::move(lt);
  d["summary"] = {{"time_ms", tot.time_ms},
                  {"bytes", tot.bytes},
                  {"bytes_fp32", tot.bytes_fp32},
                  {"energy_uj", tot.energy_uj},
                  {"energy_uj_fp32", tot.energy_uj_fp32},
                  {"share", share},
                  {"used", used},
                  {"switches", r.switches()},
                  {"canaries", tot.canaries},
                  {"below", tot.canaries_below_target},
                  {"canary_ms", tot.canary_ms}};
  d["energy"] = {
      {"pj_per_mac", pj}, {"pj_per_byte", r.energy.pj_per_byte}, {"source", r.energy.source}};

  std::string page = kPage;
  const std::string title =
      escape_html(title_in.empty() ? "dynaprec report: " + r.model : title_in);
  replace_all(page, "@TITLE@", title);
  const std::string data = script_safe(d.dump(-1, ' ', false, json::error_handler_t::replace));
  const std::string slot = "id=\"data\">@DATA@";
  const size_t at = page.find(slot) + slot.size() - 6;
  page.replace(at, 6, data);
  return page;
}

void write_html(const Report& r, const std::string& path, const std::string& title) {
  const std::string page = render_html(r, title);
  std::ofstream f(path, std::ios::binary);
  if (!f)
    throw Error(ErrorKind::kIo, "cannot write the HTML report to " + path +
                                    " (check that the directory exists and is writable)");
  f << page;
  if (!f) throw Error(ErrorKind::kIo, "write error on " + path);
}

}  // namespace dynaprec
