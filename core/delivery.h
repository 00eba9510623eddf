// DeliveryHub: who is listening for which device, and waking them up.
// SPDX-License-Identifier: GPL-3.0-or-later
//
// Messages are never held here: a Receive stream is woken by Notify and reads
// its device's queue from storage, so a stalled consumer costs no memory
// beyond its stream's small read buffer. Offer hands a just-written entry to
// the device's stream as well; a stream that is caught up takes it into that
// buffer instead of reading it back (anything else falls back to Notify).
//
// Thread-safe. Subscribers are called without the hub's lock held.
#ifndef PARLEY_CORE_DELIVERY_H_
#define PARLEY_CORE_DELIVERY_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "storage/storage.h"

namespace parley::core {

class Subscriber {
 public:
  virtual ~Subscriber() = default;
  // New entries may be in the device's queue. Must not block for long.
  virtual void Notify() = 0;
  // The entry `delivery_id` with this payload (a serialized v1::Message) has
  // been written to the device's queue. The default treats it as Notify().
  virtual void Offer(uint64_t delivery_id,
                     const std::shared_ptr<const std::string>& payload) {
    (void)delivery_id;
    (void)payload;
    Notify();
  }
  // Ends the stream with `status` (replaced, device removed, shutdown).
  virtual void Close(const absl::Status& status) = 0;
};

class DeliveryHub {
 public:
  using DeviceKey = std::pair<std::string, uint32_t>;

  // Makes `sub` the device's subscriber. A previous subscriber of the same
  // device is closed with ABORTED ("replaced by a newer Receive stream").
  void Register(const DeviceKey& device, std::shared_ptr<Subscriber> sub);
  // Removes `sub` if it is still the device's subscriber.
  void Unregister(const DeviceKey& device, const Subscriber* sub);
  void Notify(const std::vector<storage::QueueTarget>& targets);
  // The entries an Append wrote (AppendResult::queued for these targets):
  // each goes to its device's subscriber, if any, in order.
  void Offer(const std::vector<storage::QueueTarget>& targets,
             const std::vector<storage::QueuedEntry>& queued);
  void Close(const DeviceKey& device, const absl::Status& status);
  // Closes every subscriber (shutdown); later Register calls close at once.
  void CloseAll(const absl::Status& status);
  size_t size() const;

 private:
  mutable absl::Mutex mu_;
  absl::flat_hash_map<DeviceKey, std::shared_ptr<Subscriber>> subs_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status closed_status_ ABSL_GUARDED_BY(mu_);
};

}  // namespace parley::core

#endif  // PARLEY_CORE_DELIVERY_H_
