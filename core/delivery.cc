// SPDX-License-Identifier: GPL-3.0-or-later
#include "core/delivery.h"

#include <algorithm>

namespace parley::core {

OfferOrder::Result OfferOrder::Offer(uint64_t delivery_id, std::shared_ptr<const std::string> payload, size_t room) {
  Result r;
  if (delivery_id <= last_) return r;  // stale: a storage read had it
  if (delivery_id != last_ + 1) {
    if (held_.size() >= max_held_ && !held_.contains(delivery_id)) {
      held_.clear();
      r.read_storage = true;
      return r;
    }
    held_.emplace(delivery_id, std::move(payload));
    return r;
  }
  if (room == 0) {
    held_.clear();
    r.read_storage = true;
    return r;
  }
  last_ = delivery_id;
  r.ready.push_back({delivery_id, std::move(payload)});
  while (!held_.empty() && held_.begin()->first == last_ + 1) {
    if (r.ready.size() == room) {
      held_.clear();
      r.read_storage = true;
      break;
    }
    auto node = held_.extract(held_.begin());
    last_ = node.key();
    r.ready.push_back({node.key(), std::move(node.mapped())});
  }
  return r;
}

void OfferOrder::AfterRead(uint64_t last_read) {
  held_.clear();
  last_ = std::max(last_, last_read);
}

void DeliveryHub::Register(const DeviceKey& device, std::shared_ptr<Subscriber> sub) {
  std::shared_ptr<Subscriber> old;
  absl::Status refuse;
  {
    absl::MutexLock lock(&mu_);
    if (closed_) {
      refuse = closed_status_;
    } else {
      auto& slot = subs_[device];
      old = std::move(slot);
      slot = sub;
    }
  }
  if (!refuse.ok()) {
    sub->Close(refuse);
    return;
  }
  if (old) old->Close(absl::AbortedError("replaced by a newer Receive stream for this device"));
}

void DeliveryHub::Unregister(const DeviceKey& device, const Subscriber* sub) {
  absl::MutexLock lock(&mu_);
  auto it = subs_.find(device);
  if (it != subs_.end() && it->second.get() == sub) subs_.erase(it);
}

void DeliveryHub::Notify(const std::vector<storage::QueueTarget>& targets) {
  std::vector<std::shared_ptr<Subscriber>> wake;
  wake.reserve(targets.size());
  {
    absl::MutexLock lock(&mu_);
    for (const auto& t : targets) {
      auto it = subs_.find(DeviceKey(t.account_id, t.device_id));
      if (it != subs_.end()) wake.push_back(it->second);
    }
  }
  for (auto& s : wake) s->Notify();
}

void DeliveryHub::Offer(const std::vector<storage::QueueTarget>& targets,
                        const std::vector<storage::QueuedEntry>& queued) {
  std::vector<std::pair<std::shared_ptr<Subscriber>, const storage::QueuedEntry*>> offer;
  offer.reserve(queued.size());
  {
    absl::MutexLock lock(&mu_);
    for (const auto& e : queued) {
      if (e.target >= targets.size()) continue;
      const storage::QueueTarget& t = targets[e.target];
      auto it = subs_.find(DeviceKey(t.account_id, t.device_id));
      if (it != subs_.end()) offer.emplace_back(it->second, &e);
    }
  }
  for (auto& [s, e] : offer) s->Offer(e->delivery_id, e->payload);
}

void DeliveryHub::Close(const DeviceKey& device, const absl::Status& status) {
  std::shared_ptr<Subscriber> sub;
  {
    absl::MutexLock lock(&mu_);
    auto it = subs_.find(device);
    if (it == subs_.end()) return;
    sub = std::move(it->second);
    subs_.erase(it);
  }
  sub->Close(status);
}

void DeliveryHub::CloseAll(const absl::Status& status) {
  absl::flat_hash_map<DeviceKey, std::shared_ptr<Subscriber>> subs;
  {
    absl::MutexLock lock(&mu_);
    closed_ = true;
    closed_status_ = status;
    subs.swap(subs_);
  }
  for (auto& [k, s] : subs) s->Close(status);
}

size_t DeliveryHub::size() const {
  absl::MutexLock lock(&mu_);
  return subs_.size();
}

}  // namespace parley::core
