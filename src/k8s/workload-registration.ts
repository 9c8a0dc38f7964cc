import type { Logger } from '../log.js';
import type { ProxyNode } from '../xds/protocol/node.js';
import type { ProxyReport, StreamIdentity, ViewAttachment, ViewProvider, XdsView } from '../xds/view.js';
import type { WorkloadEntryController } from './workload-entry-controller.js';
import { registeringProxy } from './workload-entry-template.js';

/**
 * Puts WorkloadEntry auto-registration and health in front of the relay's groups: a VM served in
 * group mode (where istiod never sees it) with AUTO_REGISTER_GROUP gets its entry from this relay;
 * in stream mode its own stream reaches istiod, which registers it. A VM that may not register
 * (no WorkloadGroup, wrong identity) has its stream refused before anything is sent, as istiod refuses it.
 */
export class WorkloadRegisteringProvider implements ViewProvider {
  constructor(private readonly inner: ViewProvider, private readonly controller: WorkloadEntryController, private readonly log: Logger) {}

  attach(node: ProxyNode, stream: StreamIdentity): ViewAttachment {
    const attachment = this.inner.attach(node, stream);
    const proxy = attachment.mode === 'group' ? registeringProxy(node) : undefined;
    if (!proxy) return attachment;
    const registration = this.controller.connect(proxy, stream.caller);
    // The stream waits for its entry and is refused if it cannot have one: istiod registers a VM
    // before it answers it (pilot/pkg/xds/ads.go, initConnection), so a refused VM is sent nothing.
    // An entry that exists already is enough (the controller writes its takeover meanwhile).
    const ready = registration.admitted.catch((error: unknown) => {
      this.log.warn({ proxy: node.id, err: (error as Error).message }, 'auto-registration refused; closing the stream');
      throw error;
    });
    const inner = attachment.view;
    const view: XdsView = {
      cache: inner.cache,
      memo: inner.memo,
      changeInterest: (typeUrl, change) => inner.changeInterest(typeUrl, change),
      report: (event: ProxyReport) => {
        if (event.kind === 'health') this.controller.reportHealth(registration, !event.error?.message, event.error?.message ?? '');
        inner.report(event);
      },
    };
    return {
      view,
      key: attachment.key,
      mode: attachment.mode,
      ready,
      release: () => {
        attachment.release();
        this.controller.disconnect(registration);
      },
    };
  }
}
