// Lets several calibration observers watch one forward pass (e.g. aespa needs the input
// statistics and the attention statistics of the same windows).
#pragma once

#include <vector>

#include "worker/model/decoder_model.h"

namespace qshard {

class ObserverFanOut : public LayerObserver {
 public:
  explicit ObserverFanOut(std::vector<LayerObserver*> observers) : observers_(std::move(observers)) {}
  void OnLinearInput(int layer, const std::string& linear, const Tensor& x) override {
    for (LayerObserver* o : observers_) o->OnLinearInput(layer, linear, x);
  }
  bool WantsAttention(int layer) const override {
    for (LayerObserver* o : observers_)
      if (o->WantsAttention(layer)) return true;
    return false;
  }
  void OnAttention(int layer, const Tensor& probs, const Tensor& q, const Tensor& k, int64_t batch,
                   int64_t seq) override {
    for (LayerObserver* o : observers_) o->OnAttention(layer, probs, q, k, batch, seq);
  }
  Tensor* ProbabilitiesScratch(int layer) override {
    for (LayerObserver* o : observers_)
      if (Tensor* scratch = o->ProbabilitiesScratch(layer); scratch != nullptr) return scratch;
    return nullptr;
  }

 private:
  std::vector<LayerObserver*> observers_;
};

}  // namespace qshard
