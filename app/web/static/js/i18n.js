// Every word of the web app, one table per language. Vietnamese is the default; the toggle keeps
// the choice in localStorage. A key missing from a table shows as the key: a test looks for that.
export const STRINGS = {
  vi: {
    "lang.toggle": "English",
    "point.title": "Điểm cầu trực tuyến",
    "check.heading": "Kiểm tra thiết bị",
    "check.camera": "Camera",
    "check.mic": "Micrô",
    "check.level": "Mức âm thanh",
    "check.network": "Mạng",
    "check.network.testing": "Đang kiểm tra…",
    "check.network.ok": "Tốt ({rtt} ms)",
    "check.network.bad": "Không kết nối được máy chủ",
    "check.join": "Vào phòng họp",
    "check.denied": "Trình duyệt không cho dùng camera hoặc micrô: {error}",
    "conn.connecting": "Đang kết nối…",
    "conn.online": "Đã kết nối",
    "conn.reconnecting": "Mất kết nối, đang kết nối lại…",
    "conn.ended": "Phiên họp đã kết thúc",
    "conn.refused": "Đường dẫn không hợp lệ hoặc đã bị thu hồi",
    "stage.program": "Hội trường",
    "stage.speaker": "Đang phát biểu: {name}",
    "hand.topic": "Nội dung muốn phát biểu (không bắt buộc)",
    "hand.raise": "Giơ tay xin phát biểu",
    "hand.cancel": "Hạ tay",
    "hand.waiting": "Bạn đang chờ, thứ tự {position}",
    "floor.yours": "Bạn đang được phát biểu — micrô đã bật",
    "floor.left": "Còn {seconds} giây",
    "floor.release": "Kết thúc phát biểu",
    "rollcall.prompt": "Điểm danh: số người có mặt tại điểm cầu",
    "rollcall.note": "Ghi chú (không bắt buộc)",
    "rollcall.send": "Xác nhận",
    "rollcall.done": "Đã điểm danh: {headcount} người ({status})",
    "rollcall.deadline": "Hạn: {time}",
    "status.present": "có mặt",
    "status.late": "đến muộn",
    "status.absent": "vắng",
    "status.excused": "có lý do",
    "status.waiting": "chưa trả lời",
    "error.generic": "Lỗi: {message}",
  },
  en: {
    "lang.toggle": "Tiếng Việt",
    "point.title": "Online connection point",
    "check.heading": "Device check",
    "check.camera": "Camera",
    "check.mic": "Microphone",
    "check.level": "Sound level",
    "check.network": "Network",
    "check.network.testing": "Testing…",
    "check.network.ok": "Good ({rtt} ms)",
    "check.network.bad": "Cannot reach the server",
    "check.join": "Join the meeting",
    "check.denied": "The browser refused the camera or microphone: {error}",
    "conn.connecting": "Connecting…",
    "conn.online": "Connected",
    "conn.reconnecting": "Connection lost, reconnecting…",
    "conn.ended": "The session has ended",
    "conn.refused": "This link is not valid or was revoked",
    "stage.program": "The hall",
    "stage.speaker": "Speaking: {name}",
    "hand.topic": "What you want to speak about (optional)",
    "hand.raise": "Raise hand to speak",
    "hand.cancel": "Lower hand",
    "hand.waiting": "You are waiting, number {position}",
    "floor.yours": "You have the floor — your microphone is on",
    "floor.left": "{seconds} seconds left",
    "floor.release": "Finish speaking",
    "rollcall.prompt": "Roll-call: people present at this point",
    "rollcall.note": "Note (optional)",
    "rollcall.send": "Confirm",
    "rollcall.done": "Confirmed: {headcount} people ({status})",
    "rollcall.deadline": "Deadline: {time}",
    "status.present": "present",
    "status.late": "late",
    "status.absent": "absent",
    "status.excused": "excused",
    "status.waiting": "not answered",
    "error.generic": "Error: {message}",
  },
};

export function language() {
  const chosen = localStorage.getItem("diemcau.lang");
  return chosen === "en" ? "en" : "vi";
}

export function t(key, values = {}) {
  const text = STRINGS[language()][key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => String(values[name] ?? ""));
}

// Fill every [data-i18n] element (and [data-i18n-placeholder]) of the page.
export function translate(root = document) {
  document.documentElement.lang = language();
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-placeholder]")) {
    el.placeholder = t(el.dataset.i18nPlaceholder);
  }
}

export function toggleLanguage() {
  localStorage.setItem("diemcau.lang", language() === "vi" ? "en" : "vi");
  translate();
}
