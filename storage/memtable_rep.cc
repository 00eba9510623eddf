// SPDX-License-Identifier: GPL-3.0-or-later
// Parley's memtable skip list (memtable_rep.h): LevelDB's skip-list design
// (single writer, lock-free readers, random heights with branching 4) with a
// finger per insert hint.
#include "storage/memtable_rep.h"

#include <atomic>
#include <cstdint>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "rocksdb/memtablerep.h"
#include "rocksdb/version.h"

// The two RocksDB internals read below were checked against 7.8 (Debian 12's
// librocksdb): LookupKey's first member is the start of its memtable key
// (db/lookup_key.h), and the Arena RocksDB passes to GetIterator implements
// the Allocator interface below as its first base (memory/arena.h,
// memory/allocator.h). Another version must be checked again.
static_assert(ROCKSDB_MAJOR == 7 && ROCKSDB_MINOR == 8,
              "storage/memtable_rep.cc reads RocksDB 7.8 internals; check "
              "LookupKey and Arena/Allocator against this version");

namespace rocksdb {
class Allocator {
 public:
  virtual ~Allocator() {}
  virtual char* Allocate(size_t bytes) = 0;
  virtual char* AllocateAligned(size_t bytes, size_t huge_page_size = 0,
                                Logger* logger = nullptr) = 0;
  virtual size_t BlockSize() const = 0;
};
}  // namespace rocksdb

namespace parley::storage {
namespace {

constexpr int kMaxHeight = 12;  // 4^12 entries before inserts slow down
constexpr int kMaxWalk = 32;    // steps per level before a full search

struct Node {
  // next_[0] is here; level i lives at &next_[0] - i.
  std::atomic<Node*> next_[1];
  Node* Next(int i) { return (&next_[0] - i)->load(std::memory_order_acquire); }
  void SetNext(int i, Node* x) {
    (&next_[0] - i)->store(x, std::memory_order_release);
  }
  Node* NoBarrierNext(int i) {
    return (&next_[0] - i)->load(std::memory_order_relaxed);
  }
  void NoBarrierSetNext(int i, Node* x) {
    (&next_[0] - i)->store(x, std::memory_order_relaxed);
  }
  // The entry RocksDB wrote follows the node.
  const char* Key() const {
    return reinterpret_cast<const char*>(this) + sizeof(Node);
  }
};

// Where the previous insert of a prefix went: the node and its predecessor
// at every level (lower bounds for the next key of that prefix).
struct Finger {
  Node* last = nullptr;
  int last_height = 0;
  Node* pred[kMaxHeight];
};

class FingerSkipList final : public rocksdb::MemTableRep {
 public:
  FingerSkipList(const rocksdb::MemTableRep::KeyComparator& cmp,
                 rocksdb::Allocator* allocator)
      : MemTableRep(allocator), cmp_(cmp) {
    char* raw = nullptr;
    const size_t prefix = sizeof(std::atomic<Node*>) * (kMaxHeight - 1);
    MemTableRep::Allocate(prefix + sizeof(Node) + 8, &raw);
    head_ = reinterpret_cast<Node*>(Align(raw) + prefix);
    for (int i = 0; i < kMaxHeight; ++i) head_->NoBarrierSetNext(i, nullptr);
    default_finger_ = NewFinger();
  }

  rocksdb::KeyHandle Allocate(const size_t len, char** buf) override {
    const int height = RandomHeight();
    const size_t prefix = sizeof(std::atomic<Node*>) * (height - 1);
    char* raw = nullptr;
    MemTableRep::Allocate(prefix + sizeof(Node) + len + 8, &raw);
    Node* x = reinterpret_cast<Node*>(Align(raw) + prefix);
    // Stash the height in next_[0] until the node is linked.
    x->next_[0].store(reinterpret_cast<Node*>(static_cast<intptr_t>(height)),
                      std::memory_order_relaxed);
    *buf = const_cast<char*>(x->Key());
    return *buf;
  }

  void Insert(rocksdb::KeyHandle handle) override {
    InsertWith(handle, default_finger_);
  }
  bool InsertKey(rocksdb::KeyHandle handle) override {
    Insert(handle);
    return true;
  }
  // RocksDB keeps one hint slot per prefix and memtable, and hands the same
  // slot to the memtable's range-deletion table (always RocksDB's own skip
  // list, which stores its own kind of splice there). So the slot is left to
  // it, and this list keeps its fingers by the slot's address (stable: the
  // slots are values of an unordered_map).
  void InsertWithHint(rocksdb::KeyHandle handle, void** hint) override {
    Finger*& finger = fingers_[hint];
    if (finger == nullptr) finger = NewFinger();
    InsertWith(handle, finger);
  }
  bool InsertKeyWithHint(rocksdb::KeyHandle handle, void** hint) override {
    InsertWithHint(handle, hint);
    return true;
  }

  bool Contains(const char* key) const override {
    Node* x = FindGreaterOrEqual(key);
    return x != nullptr && cmp_(x->Key(), key) == 0;
  }

  size_t ApproximateMemoryUsage() override { return 0; }  // all in the arena

  // Overridden because RocksDB's default Get never frees the iterator it
  // makes (its own representations all override Get). LookupKey is internal
  // to RocksDB; its first member is the start of the memtable key (see the
  // static_assert above).
  void Get(const rocksdb::LookupKey& k, void* callback_args,
           bool (*callback_func)(void* arg, const char* entry)) override {
    const char* memtable_key = *reinterpret_cast<const char* const*>(&k);
    for (Node* x = FindGreaterOrEqual(memtable_key);
         x != nullptr && callback_func(callback_args, x->Key());
         x = x->Next(0)) {
    }
  }

  class Iter final : public rocksdb::MemTableRep::Iterator {
   public:
    explicit Iter(const FingerSkipList* rep) : rep_(rep) {}
    bool Valid() const override { return node_ != nullptr; }
    const char* key() const override { return node_->Key(); }
    void Next() override { node_ = node_->Next(0); }
    void Prev() override {
      node_ = rep_->FindLessThan(node_->Key());
      if (node_ == rep_->head_) node_ = nullptr;
    }
    void Seek(const rocksdb::Slice& internal_key,
              const char* memtable_key) override {
      const char* k =
          memtable_key != nullptr ? memtable_key : Encode(internal_key);
      node_ = rep_->FindGreaterOrEqual(k);
    }
    void SeekForPrev(const rocksdb::Slice& internal_key,
                     const char* memtable_key) override {
      const char* k =
          memtable_key != nullptr ? memtable_key : Encode(internal_key);
      Node* x = rep_->FindGreaterOrEqual(k);
      if (x != nullptr && rep_->cmp_(x->Key(), k) == 0) {
        node_ = x;
        return;
      }
      node_ = rep_->FindLessThan(k);
      if (node_ == rep_->head_) node_ = nullptr;
    }
    void SeekToFirst() override { node_ = rep_->head_->Next(0); }
    void SeekToLast() override {
      node_ = rep_->FindLast();
      if (node_ == rep_->head_) node_ = nullptr;
    }

   private:
    const char* Encode(const rocksdb::Slice& k) {
      tmp_.clear();
      uint32_t n = static_cast<uint32_t>(k.size());
      while (n >= 128) {
        tmp_.push_back(static_cast<char>(n | 128));
        n >>= 7;
      }
      tmp_.push_back(static_cast<char>(n));
      tmp_.append(k.data(), k.size());
      return tmp_.data();
    }
    const FingerSkipList* rep_;
    Node* node_ = nullptr;
    std::string tmp_;
  };

  // With an arena (the one of the DB iterator or flush that owns this
  // iterator) RocksDB only runs the destructor when done, so the iterator is
  // placed in that arena; without one the caller deletes it.
  rocksdb::MemTableRep::Iterator* GetIterator(rocksdb::Arena* arena) override {
    if (arena == nullptr) return new Iter(this);
    char* mem = reinterpret_cast<rocksdb::Allocator*>(arena)->AllocateAligned(
        sizeof(Iter));
    return new (mem) Iter(this);
  }

 private:
  static char* Align(char* p) {
    const uintptr_t v = reinterpret_cast<uintptr_t>(p);
    return reinterpret_cast<char*>((v + 7) & ~uintptr_t{7});
  }

  Finger* NewFinger() {
    char* raw = nullptr;
    MemTableRep::Allocate(sizeof(Finger) + 8, &raw);
    Finger* f = new (Align(raw)) Finger;
    for (Node*& p : f->pred) p = head_;
    return f;
  }

  int RandomHeight() {
    int h = 1;
    while (h < kMaxHeight && (Rand() & 3) == 0) ++h;
    return h;
  }
  uint64_t Rand() {
    rng_ ^= rng_ << 13;
    rng_ ^= rng_ >> 7;
    rng_ ^= rng_ << 17;
    return rng_;
  }

  int MaxHeight() const { return max_height_.load(std::memory_order_relaxed); }

  // key > n's key (n == nullptr means the end: false).
  bool KeyIsAfter(const char* key, Node* n) const {
    return n != nullptr && cmp_(n->Key(), key) < 0;
  }

  // The first node at or after key (a node the writer links in after the
  // search is as good an answer as the one before it).
  Node* FindGreaterOrEqual(const char* key) const {
    return FindLessThan(key)->Next(0);
  }
  // The last node before key, or head_.
  Node* FindLessThan(const char* key) const {
    Node* x = head_;
    int level = MaxHeight() - 1;
    while (true) {
      Node* next = x->Next(level);
      if (KeyIsAfter(key, next)) {
        x = next;
      } else if (level == 0) {
        return x;
      } else {
        --level;
      }
    }
  }
  Node* FindLast() const {
    Node* x = head_;
    int level = MaxHeight() - 1;
    while (true) {
      Node* next = x->Next(level);
      if (next != nullptr) {
        x = next;
      } else if (level == 0) {
        return x;
      } else {
        --level;
      }
    }
  }

  // Fills pred[0..height) with key's predecessors, starting each level at
  // the finger (every finger entry is a node linked at that level, or the
  // head, and pred[i+1] <= pred[i] < last); false if the finger is not below
  // key or a walk gets long.
  bool FingerSearch(const char* key, Finger* f, int height, Node** pred) {
    bool after_last;
    if (f->last != nullptr && KeyIsAfter(key, f->last)) {
      after_last = true;
    } else if (f->pred[0] == head_ || KeyIsAfter(key, f->pred[0])) {
      after_last = false;
    } else {
      return false;
    }
    for (int i = 0; i < height; ++i) {
      Node* x = (after_last && i < f->last_height) ? f->last : f->pred[i];
      int steps = 0;
      while (true) {
        Node* next = x->NoBarrierNext(i);
        if (!KeyIsAfter(key, next)) break;
        x = next;
        if (++steps > kMaxWalk) return false;
      }
      pred[i] = x;
    }
    return true;
  }

  // Exact predecessors at every level, from the top.
  void FullSearch(const char* key, Node** pred) {
    Node* x = head_;
    for (int level = kMaxHeight - 1; level >= 0; --level) {
      while (true) {
        Node* next = x->NoBarrierNext(level);
        if (!KeyIsAfter(key, next)) break;
        x = next;
      }
      pred[level] = x;
    }
  }

  void InsertWith(rocksdb::KeyHandle handle, Finger* f) {
    const char* key = static_cast<const char*>(handle);
    Node* x = reinterpret_cast<Node*>(const_cast<char*>(key)) - 1;
    const int height = static_cast<int>(reinterpret_cast<intptr_t>(
        x->next_[0].load(std::memory_order_relaxed)));
    if (height > MaxHeight()) {
      max_height_.store(height, std::memory_order_relaxed);
    }
    Node* pred[kMaxHeight];
    if (!FingerSearch(key, f, height, pred)) {
      FullSearch(key, pred);
      for (int i = height; i < kMaxHeight; ++i) f->pred[i] = pred[i];
    }
    for (int i = 0; i < height; ++i) {
      x->NoBarrierSetNext(i, pred[i]->NoBarrierNext(i));
      pred[i]->SetNext(i, x);
      f->pred[i] = pred[i];
    }
    f->last = x;
    f->last_height = height;
  }

  const rocksdb::MemTableRep::KeyComparator& cmp_;
  Node* head_;
  Finger* default_finger_;
  absl::flat_hash_map<void**, Finger*> fingers_;  // by hint slot; writer only
  std::atomic<int> max_height_{1};
  uint64_t rng_ = 0x9E3779B97F4A7C15ull;
};

class Factory final : public rocksdb::MemTableRepFactory {
 public:
  using rocksdb::MemTableRepFactory::CreateMemTableRep;
  rocksdb::MemTableRep* CreateMemTableRep(
      const rocksdb::MemTableRep::KeyComparator& cmp,
      rocksdb::Allocator* allocator, const rocksdb::SliceTransform*,
      rocksdb::Logger*) override {
    return new FingerSkipList(cmp, allocator);
  }
  const char* Name() const override { return "parley.FingerSkipList"; }
};

}  // namespace

std::shared_ptr<rocksdb::MemTableRepFactory> NewFingerSkipListFactory() {
  return std::make_shared<Factory>();
}

}  // namespace parley::storage
