// The part of noVNC's RFB (docs/API.md of @novnc/novnc 1.7) the page uses.
declare module '@novnc/novnc' {
  export interface RfbOptions {
    wsProtocols?: string[];
    shared?: boolean;
  }
  export default class RFB extends EventTarget {
    constructor(target: HTMLElement, urlOrChannel: string | WebSocket, options?: RfbOptions);
    scaleViewport: boolean;
    resizeSession: boolean;
    focusOnClick: boolean;
    background: string;
    disconnect(): void;
    focus(): void;
    sendCtrlAltDel(): void;
    sendKey(keysym: number, code: string | null, down?: boolean): void;
    getImageData(): ImageData;
  }
}
