/**
 * What calls a merchant's attention to a payment: a short beep (WebAudio, muted by a toggle
 * kept in localStorage), a desktop notification while the tab is hidden (permission asked
 * on a click, as browsers require), and a line in an aria-live region for screen readers.
 */

const MUTE_KEY = 'qrevents.muted';
const ANNOUNCED_LINES = 3;

export class Alerts {
  constructor({ announcer }) {
    this.announcer = announcer;
    this.muted = localStorage.getItem(MUTE_KEY) === 'yes';
    this.audio = null;
    this.counts = { beeps: 0, notifications: 0, announced: 0 };
  }

  /** Browsers start audio only after a gesture: call from the first click or key press. */
  unlockAudio() {
    const AudioContext = window.AudioContext || window.webkitAudioContext;
    if (!this.audio && AudioContext) this.audio = new AudioContext();
    if (this.audio?.state === 'suspended') this.audio.resume();
  }

  setMuted(muted) {
    this.muted = muted;
    localStorage.setItem(MUTE_KEY, muted ? 'yes' : 'no');
  }

  /** Two rising tones, 0.3 s in all: heard across a shop, not alarming. */
  beep() {
    if (this.muted || !this.audio) return;
    const start = this.audio.currentTime;
    for (const [offset, frequency] of [[0, 880], [0.15, 1320]]) {
      const tone = this.audio.createOscillator();
      const gain = this.audio.createGain();
      tone.frequency.value = frequency;
      gain.gain.setValueAtTime(0.0001, start + offset);
      gain.gain.exponentialRampToValueAtTime(0.25, start + offset + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, start + offset + 0.14);
      tone.connect(gain).connect(this.audio.destination);
      tone.start(start + offset);
      tone.stop(start + offset + 0.15);
    }
    this.counts.beeps += 1;
  }

  get canNotify() {
    return 'Notification' in window;
  }

  get notifying() {
    return this.canNotify && Notification.permission === 'granted';
  }

  async askToNotify() {
    if (!this.canNotify) return false;
    return (await Notification.requestPermission()) === 'granted';
  }

  /** Announce a payment: read out, beeped, and notified when nobody is looking at the tab. */
  payment(title, body) {
    const line = document.createElement('p');
    line.textContent = `${title}: ${body}`;
    this.announcer.append(line);
    while (this.announcer.children.length > ANNOUNCED_LINES) this.announcer.firstElementChild.remove();
    this.counts.announced += 1;
    this.beep();
    if (document.hidden && this.notifying) {
      new Notification(title, { body, tag: 'qrevents-payment', renotify: true });
      this.counts.notifications += 1;
    }
  }
}
