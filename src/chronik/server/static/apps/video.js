/* The video pipeline's console page: upload, a live board of cards (thumbnail, status, worker,
 * timings), and one video's player and timeline. The board polls every 1.5 s, so statuses change and
 * thumbnails appear on their own as the workers finish. Thumbnails and videos are fetched with the
 * API key and shown from object URLs (an <img src> could not send the key). */
"use strict";

chronik.registerApp("video", async (el, params) => {
  const { api, h, ago, fmtTime, toast, every, errorBox, pageHead, streamLink, blobUrl, onLeave } = chronik;
  const STATUS = {
    uploaded: ["info", "queued"], processing: ["warn", "processing"], retrying: ["warn", "retrying"],
    succeeded: ["ok", "ready"], failed: ["bad", "failed · parked"],
  };
  const badge = (status) => h("span", { class: `badge ${(STATUS[status] || ["", status])[0]}`, "data-testid": "video-status", text: (STATUS[status] || ["", status])[1] });
  const seconds = (value) => (value === null || value === undefined ? "–" : `${value.toFixed(value < 10 ? 2 : 1)} s`);
  const bytes = (n) => (n > 1_048_576 ? `${(n / 1_048_576).toFixed(1)} MB` : `${Math.max(1, Math.round(n / 1024))} KB`);
  const thumbs = new Map();  // video id -> object URL (an attempt's outputs never change)
  onLeave(() => { for (const url of thumbs.values()) URL.revokeObjectURL(url); });
  let selected = params.get("video");
  let showAll = false;

  const note = h("div", {});
  const stats = h("div", { class: "stats", "data-testid": "video-counts" });
  const boardBox = h("div", { class: "video-board", "data-testid": "video-board" }, h("div", { class: "empty", text: "Loading…" }));
  const detail = h("div", { "data-testid": "video-detail" });
  const file = h("input", { type: "file", accept: "video/*,.mp4,.mov,.mkv,.webm,.avi", "aria-label": "video file", "data-testid": "video-file" });
  const uploader = h("input", { type: "text", value: "me", "aria-label": "uploader", "data-testid": "video-uploader" });
  const uploadButton = h("button", { type: "button", "data-testid": "video-upload" }, "Upload");
  el.append(
    pageHead("Video pipeline", "Uploads are stored by their SHA-256; transcoding workers (a consumer group) make a 360p MP4 and a thumbnail. Every step is an event."),
    note,
    h("div", { class: "panel" }, h("h2", {}, "Upload a video"),
      h("div", { class: "inline-form" }, file, h("label", {}, "Uploader ", uploader), uploadButton,
        h("span", { class: "muted", text: "Any file is accepted: one that is not a video fails with a reason, is parked, and can be retried." }))),
    h("div", { class: "panel" }, h("div", { class: "page-head" }, h("h2", {}, "Board"), stats), boardBox),
    detail);

  uploadButton.addEventListener("click", async () => {
    if (!file.files.length) { toast("choose a file first"); return; }
    const form = new FormData();
    form.append("file", file.files[0]);
    form.append("uploader", uploader.value.trim() || "me");
    uploadButton.disabled = true;
    try {
      const video = await api("/api/video/videos", { method: "POST", body: form });
      toast(`uploaded ${video.filename} as video-${video.video_id}`);
      file.value = "";
      selected = video.video_id;
      history.replaceState(null, "", `#/apps/video?video=${encodeURIComponent(selected)}`);
    } catch (error) { toast(error.detail || error.message); }
    uploadButton.disabled = false;
    load();
  });

  const retry = async (id) => {
    try {
      await api(`/api/video/videos/${encodeURIComponent(id)}/retry`, { method: "POST" });
      toast(`video-${id}: retry requested, the workers try again`);
    } catch (error) { toast(error.detail || error.message); }
    load();
  };

  const thumbnail = (row) => {
    const box = h("div", { class: `thumb ${row.status}` });
    if (row.thumbnail_url) {
      const img = h("img", { alt: `thumbnail of ${row.filename}`, "data-testid": "video-thumbnail" });
      box.append(img);
      if (thumbs.has(row.video_id)) img.src = thumbs.get(row.video_id);
      else {
        blobUrl(row.thumbnail_url).then((url) => { thumbs.set(row.video_id, url); img.src = url; })
          .catch(() => { box.replaceChildren(h("span", { text: "no thumbnail" })); });
      }
    } else {
      box.append(h("span", { class: "thumb-label" },
        row.status === "failed" ? "✕" : row.status === "uploaded" ? "waiting for a worker" : "transcoding…"));
    }
    return box;
  };

  const card = (row) => h("div", {
    class: `video-card${row.video_id === selected ? " selected" : ""}`, "data-video": row.video_id, "data-status": row.status,
    tabindex: 0, role: "button", title: "show the timeline",
    onclick: () => select(row.video_id),
    onkeydown: (e) => { if (e.key === "Enter") select(row.video_id); },
  },
  thumbnail(row),
  h("div", { class: "video-card-body" },
    h("div", { class: "video-card-title" }, h("b", { class: "filename", text: row.filename, title: row.filename }), badge(row.status)),
    h("div", { class: "muted small-note" }, `by ${row.uploader}`, row.worker ? ` · ${row.worker}` : "", row.attempts ? ` · attempt ${row.attempts}` : ""),
    h("div", { class: "timings" },
      h("div", {}, h("span", { text: "queued" }), h("b", { text: seconds(row.wait_seconds) })),
      h("div", {}, h("span", { text: "processing" }), h("b", { text: seconds(row.processing_seconds) })),
      h("div", {}, h("span", { text: "total" }), h("b", { text: seconds(row.total_seconds) }))),
    row.last_error ? h("div", { class: "video-error", title: row.last_error, text: row.last_error }) : null,
    row.status === "failed" ? h("button", { type: "button", class: "small", "data-testid": "video-retry",
      onclick: (e) => { e.stopPropagation(); retry(row.video_id); } }, "Retry") : null));

  const select = (id) => {
    selected = id;
    history.replaceState(null, "", `#/apps/video?video=${encodeURIComponent(id)}`);
    shownVersion = null;
    load();
  };

  let shownVersion = null;
  let player = null;
  const showVideo = async () => {
    if (!selected) { detail.replaceChildren(); return; }
    let video;
    try { video = await api(`/api/video/videos/${encodeURIComponent(selected)}`); }
    catch (error) { detail.replaceChildren(h("div", { class: "panel" }, errorBox(error))); return; }
    if (shownVersion === video.version) return;  // nothing new: keep the player playing
    shownVersion = video.version;
    if (video.output_url && (!player || player.dataset.video !== video.video_id)) {
      // Muted, it may play on its own: a newcomer sees the transcoded clip move at once.
      const shown = h("video", { controls: true, muted: true, autoplay: true, loop: true, playsinline: true,
        "data-video": video.video_id, "data-testid": "video-player" });
      shown.muted = true;
      player = shown;
      if (thumbs.has(video.video_id)) shown.poster = thumbs.get(video.video_id);
      blobUrl(video.output_url).then((url) => { shown.src = url; onLeave(() => URL.revokeObjectURL(url)); })
        .catch((error) => toast(error.detail || error.message));
    } else if (!video.output_url) player = null;
    const rows = video.timeline.map((step) => {
      const d = step.detail;
      const what = {
        VideoUploaded: `${d.filename} · ${bytes(d.size_bytes)} · sha256 ${String(d.sha256).slice(0, 12)}…`,
        VideoProcessingStarted: `attempt ${d.attempt} by ${d.worker} (lease epoch ${d.epoch})`,
        VideoProcessingSucceeded: `${d.width}×${d.height} H.264 · ${d.duration_seconds} s · ${bytes(d.output_bytes)} + PNG`,
        VideoProcessingFailed: `${d.reason}${d.will_retry ? " · will retry" : ""}`,
        VideoParked: `parked after ${d.attempts} attempts`,
        VideoRetryRequested: `retry requested by ${d.requested_by}`,
      }[step.type] || "";
      return h("tr", {},
        h("td", { class: "num nowrap", text: `+${step.since_upload_seconds.toFixed(2)} s` }),
        h("td", { class: "nowrap", title: step.actor ? `by ${step.actor}` : "" }, h("b", { text: step.type })),
        h("td", { text: what }),
        h("td", { class: "muted nowrap", title: fmtTime(step.at), text: ago(step.at) }));
    });
    detail.replaceChildren(h("div", { class: "panel", "data-testid": "video-panel" },
      h("div", { class: "page-head" },
        h("div", {}, h("h2", {}, `${video.filename} `, badge(video.status)),
          h("div", { class: "muted" }, streamLink(`video-${video.video_id}`), ` · version ${video.version} · uploaded by ${video.uploader}`)),
        h("div", { class: "actions" },
          video.status === "failed" ? h("button", { type: "button", class: "small", onclick: () => retry(video.video_id) }, "Retry") : null,
          video.output_url ? h("a", { href: "#", onclick: async (e) => {
            e.preventDefault();
            try { window.open(await blobUrl(video.output_url), "_blank", "noopener"); } catch (error) { toast(error.detail || error.message); }
          } }, "Open the MP4") : null)),
      h("div", { class: "grid-2 wide-left" },
        h("div", {}, h("h3", {}, "Timeline (every step is an event of the video's stream)"),
          h("div", { class: "table-wrap" }, h("table", { "data-testid": "video-timeline" }, h("tbody", {}, rows)))),
        h("div", {}, h("h3", {}, "Output"), player || h("div", { class: "empty", text:
          video.status === "failed" ? `No output: ${video.last_error || "failed"}` : "No output yet: the workers are on it." })))));
  };

  const load = async () => {
    let found;
    try { found = await api("/api/video/board"); } catch (error) { boardBox.replaceChildren(errorBox(error)); return; }
    note.replaceChildren(...(found.transcoder_available ? [] : [h("div", { class: "note", "data-testid": "video-no-transcoder" },
      "This server has no PyAV, so no video worker runs here and uploads stay queued: install chronik[video] (pip install -e '.[video]') ",
      "and restart, or run workers elsewhere: python -m chronik.examples.video --store URL --blobs DIR.")]));
    const order = ["uploaded", "processing", "retrying", "succeeded", "failed"];
    stats.replaceChildren(...order.map((s) => h("div", { class: "stat" },
      h("b", { "data-testid": `count-${s}`, text: found.counts[s] || 0 }), h("span", { text: (STATUS[s] || ["", s])[1] }))));
    const videos = [...found.videos].reverse();
    const shown = showAll ? videos : videos.slice(0, 24);  // the demo's uploader keeps adding clips
    const more = videos.length > shown.length ? [h("button", { type: "button", class: "small ghost more",
      "data-testid": "video-show-all", onclick: () => { showAll = true; load(); } }, `Show all ${videos.length} videos`)] : [];
    // replaceChildren would print a null argument as the text "null": pass only real nodes
    boardBox.replaceChildren(videos.length ? h("div", { class: "grid-cards" }, shown.map(card))
      : h("div", { class: "empty", text: "No video yet: upload one above." }), ...more);
    if (!selected && videos.length) selected = (videos.find((v) => v.status === "succeeded") || videos[0]).video_id;
    await showVideo();
  };
  await load();
  every(1500, load);
});
