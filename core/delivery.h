// DeliveryHub: who is listening for which device, and waking them up.
// SPDX-License-Identifier: GPL-3.0-or-later
//
// Messages are never held here: a Receive stream is woken by Notify and reads
// its device's queue from storage, so a stalled consumer costs no memory
// beyond its stream's small read buffer. Offer hands a just-written entry to
// the device's stream as well; a stream that is caught up takes it into that
// buffer instead of reading it back, putting entries offered out of order
// back in order first (OfferOrder); anything else falls back to Notify.
//
// Thread-safe. Subscribers are called without the hub's lock held.
#ifndef PARLEY_CORE_DELIVERY_H_
#define PARLEY_CORE_DELIVERY_H_

#include <cstddef>
#include <cstdint>
#include <map>
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

// Puts the entries offered to one Receive stream back in delivery-id order.
//
// A device's entries are written in id order, but each is offered from the
// thread that appended it, so a later entry can arrive first (two Sends to a
// group racing through their fan-outs). An entry exactly one above the last
// one handed out is ready at once; one further ahead is held, on the
// expectation that the missing ones are on their way, and released with
// them. The stream bounds the wait: if the gap has not filled within its
// timer it reads the queue from storage instead (DropHeld), which also
// covers an entry that was written without an offer. A storage read resets
// the order to what it returned (AfterRead). Entries at or below the last
// one handed out are stale (already read from storage).
//
// Not thread-safe: the stream calls it under its own lock.
class OfferOrder {
 public:
  struct Entry {
    uint64_t delivery_id = 0;
    std::shared_ptr<const std::string> payload;
  };
  struct Result {
    // Entries now in order, to be written next (ids last()+1, +2, ...).
    std::vector<Entry> ready;
    // The entry could not be kept in order here (more than `max_held`
    // waiting, or more ready than the caller has room for): read the queue
    // from storage. What is held has been dropped.
    bool read_storage = false;
  };

  // `max_held`: entries held ahead of a gap at most.
  explicit OfferOrder(size_t max_held) : max_held_(max_held) {}

  // An offered entry. `room`: how many ready entries the caller can take.
  Result Offer(uint64_t delivery_id, std::shared_ptr<const std::string> payload,
               size_t room);
  // A storage read handed out entries up to `last_read` (0: it returned
  // none): held entries are dropped (the read saw them, or the next read
  // will) and the order continues above max(last(), last_read).
  void AfterRead(uint64_t last_read);
  // Forgets the held entries (the caller reads storage instead).
  void DropHeld() { held_.clear(); }
  // The highest id handed out, by Offer or a storage read.
  uint64_t last() const { return last_; }
  bool has_held() const { return !held_.empty(); }

 private:
  const size_t max_held_;
  uint64_t last_ = 0;
  std::map<uint64_t, std::shared_ptr<const std::string>> held_;
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
